//! `landfall produce`.

use clap::{Args, ValueEnum};

use super::KafkaArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockArg {
    Real,
    Simulated,
}

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Records to generate; 0 runs until stopped [env: LANDFALL_COUNT, or RECORDS_LIMIT] [default: 0]
    #[arg(long)]
    pub count: Option<u64>,

    /// Records per second; 0 is as fast as possible.
    #[arg(
        long,
        env = "LANDFALL_RATE",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub rate: f64,

    /// Seed of the random generator; a run with the same seed and a simulated clock writes
    /// the same bytes. Random when not given (and then printed).
    #[arg(long, env = "LANDFALL_SEED")]
    pub seed: Option<u64>,

    /// Event time source: the machine's clock, or a simulated one (see --sim-start).
    #[arg(long, env = "LANDFALL_CLOCK", value_enum, default_value_t = ClockArg::Real)]
    pub clock: ClockArg,

    /// Start of the simulated clock (RFC 3339).
    #[arg(
        long,
        env = "LANDFALL_SIM_START",
        default_value = "2024-09-13T06:49:00Z"
    )]
    pub sim_start: String,

    /// Speed of the simulated clock: records per simulated second.
    #[arg(
        long,
        env = "LANDFALL_SIM_EVENTS_PER_SEC",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub sim_events_per_sec: f64,

    /// Date events up to this many seconds before "now", uniformly (out-of-order arrival).
    #[arg(
        long,
        env = "LANDFALL_OUT_OF_ORDER_SECS",
        default_value_t = 0,
        value_name = "SECS"
    )]
    pub out_of_order_secs: u64,

    /// Fraction of records dated 5 to 15 minutes in the past, so their window has closed.
    #[arg(
        long,
        env = "LANDFALL_LATE_FRACTION",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub late_fraction: f64,

    /// Fraction of invalid records: malformed JSON, missing fields, wrong types, end before
    /// start, far-future times.
    #[arg(
        long,
        env = "LANDFALL_INVALID_FRACTION",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub invalid_fraction: f64,

    /// Fraction of records whose campaign is not in the campaign table.
    #[arg(
        long,
        env = "LANDFALL_UNKNOWN_CAMPAIGN_FRACTION",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub unknown_campaign_fraction: f64,

    /// Create the topic first, with this many partitions (see --partitions).
    #[arg(long, env = "LANDFALL_CREATE_TOPIC")]
    pub create_topic: bool,

    /// Partitions of a topic made by --create-topic.
    #[arg(
        long,
        env = "LANDFALL_PARTITIONS",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub partitions: i32,

    /// Replication factor of a topic made by --create-topic.
    #[arg(
        long,
        env = "LANDFALL_REPLICATION_FACTOR",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub replication_factor: i32,

    /// Records per transaction.
    #[arg(
        long,
        env = "LANDFALL_TXN_SIZE",
        default_value_t = 1000,
        allow_negative_numbers = true
    )]
    pub txn_size: i64,

    /// With --rate, commit a transaction once it has been open this long, in milliseconds (at
    /// most a quarter of --transaction-timeout-ms).
    #[arg(
        long,
        env = "LANDFALL_TXN_MAX_MS",
        default_value_t = 1000,
        value_name = "MS"
    )]
    pub txn_max_ms: u64,

    /// Fraction of transactions aborted on purpose (a test knob).
    #[arg(
        long,
        env = "LANDFALL_ABORT_FRACTION",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub abort_fraction: f64,

    /// Transactional id. A restarted producer with the same id fences off its predecessor.
    #[arg(
        long,
        env = "LANDFALL_TRANSACTIONAL_ID",
        default_value = "landfall-producer"
    )]
    pub transactional_id: String,

    /// Transactional producers side by side, each with its own transactional id (`<id>-<n>`),
    /// seed, and share of the records and the rate. More than one overlaps the commit round
    /// trips; the order of records within a partition then depends on timing.
    #[arg(
        long,
        env = "LANDFALL_PRODUCERS",
        default_value_t = 1,
        allow_negative_numbers = true
    )]
    pub producers: i64,

    /// Broker-side timeout of an open transaction, in milliseconds. A transaction whose records
    /// are not all acknowledged within half of it is aborted and sent again.
    #[arg(
        long,
        env = "LANDFALL_TRANSACTION_TIMEOUT_MS",
        default_value_t = 60_000,
        value_name = "MS"
    )]
    pub transaction_timeout_ms: u64,

    /// Serve /metrics, /healthz and /readyz on this address, e.g. 0.0.0.0:9465 [default: off]
    #[arg(long, env = "LANDFALL_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,

    /// How often progress is logged, in seconds.
    #[arg(
        long,
        env = "LANDFALL_PROGRESS_INTERVAL_SECS",
        default_value_t = 5,
        value_name = "SECS"
    )]
    pub progress_interval_secs: u64,
}
