//! The command line: raw settings as the user typed them (flag, then environment variable, then
//! default). `config` validates them into typed configurations.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "landfall",
    version,
    about = "Exactly-once stream processor: Kafka ad-view events to one-minute Parquet windows"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "LANDFALL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate random view events and write them to Kafka in transactions.
    Produce(ProduceArgs),
    /// Read the topic exactly once into one-minute windows landed as Parquet files.
    Consume(ConsumeArgs),
    /// Print the finalized windows, merged across partitions; filter by time, network, campaign.
    Windows(WindowsArgs),
    /// Serve GET /windows (the same answers as `windows`, in JSON or CSV) and /healthz over HTTP.
    Serve(ServeArgs),
    /// Show what a read_committed reader sees in the topic: counts and the first records.
    Peek(PeekArgs),
    /// Audit the output against the topic: every committed record in exactly one window file
    /// or in the rejects. Exit 0 clean, 1 discrepancies, 2 bad usage.
    Verify(VerifyArgs),
    /// Benchmarks against a running broker; they print figures and ratios.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Where Kafka is. The original project's variable names keep working.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers [env: LANDFALL_BROKERS, or BOOTSTRAP_SERVERS] [default: 127.0.0.1:9092]
    #[arg(long)]
    pub brokers: Option<String>,

    /// Topic of view events [env: LANDFALL_TOPIC, or TOPIC_NAME] [default: view-log-events-1]
    #[arg(long)]
    pub topic: Option<String>,

    /// How long start-up waits for a reachable broker, in seconds.
    #[arg(
        long,
        env = "LANDFALL_CONNECT_TIMEOUT_SECS",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub connect_timeout_secs: u64,
}

/// How the group spreads partitions over instances (librdkafka's
/// `partition.assignment.strategy`). Every member of a group must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AssignmentStrategy {
    /// Incremental: a rebalance moves only the partitions that change owner; the others keep
    /// flowing.
    CooperativeSticky,
    /// Eager: every rebalance revokes every partition of every member first.
    Range,
    /// Eager, round robin.
    Roundrobin,
}

impl AssignmentStrategy {
    /// The value librdkafka takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::Roundrobin => "roundrobin",
        }
    }
}

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

    /// With --rate, commit a transaction once it has been open this long, in milliseconds.
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

    /// Broker-side timeout of an open transaction, in milliseconds.
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

#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Consumer group; its committed offsets are the restart point.
    #[arg(long, env = "LANDFALL_GROUP", default_value = "landfall")]
    pub group: String,

    /// Static group membership id (group.instance.id): a restarted instance with the same id
    /// takes its partitions back at once instead of waiting for the session timeout.
    #[arg(long, env = "LANDFALL_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How the group spreads partitions over instances. Every instance of a group must use
    /// the same strategy.
    #[arg(
        long,
        env = "LANDFALL_ASSIGNMENT_STRATEGY",
        value_enum,
        default_value = "cooperative-sticky"
    )]
    pub assignment_strategy: AssignmentStrategy,

    /// Campaign table (CSV with network_id,campaign_id,campaign_name).
    #[arg(
        long,
        env = "LANDFALL_CAMPAIGNS",
        default_value = "data/campaigns_dict/campaigns.csv"
    )]
    pub campaigns: std::path::PathBuf,

    /// Report directory: finalized window files.
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Rejects dataset: late and invalid records, outside the report directory.
    #[arg(long, env = "LANDFALL_REJECTS_DIR", default_value = "data/rejects")]
    pub rejects_dir: std::path::PathBuf,

    /// State store (sled). Deleting it loses nothing; it only speeds up restarts.
    #[arg(long, env = "LANDFALL_STATE_DIR", default_value = "data/state")]
    pub state_dir: std::path::PathBuf,

    /// Window size in seconds.
    #[arg(
        long,
        env = "LANDFALL_WINDOW_SECS",
        default_value_t = 60,
        allow_negative_numbers = true
    )]
    pub window_secs: i64,

    /// Allowed lateness in seconds: the watermark trails the greatest event time by this much.
    #[arg(
        long,
        env = "LANDFALL_ALLOWED_LATENESS_SECS",
        default_value_t = 60,
        allow_negative_numbers = true
    )]
    pub allowed_lateness_secs: i64,

    /// A partition caught up (lag 0) for this long closes its windows by the wall clock.
    #[arg(
        long,
        env = "LANDFALL_IDLE_TIMEOUT_SECS",
        default_value_t = 30,
        allow_negative_numbers = true
    )]
    pub idle_timeout_secs: i64,

    /// An event dated further than this after its Kafka record timestamp is invalid.
    #[arg(
        long,
        env = "LANDFALL_MAX_FUTURE_SKEW_SECS",
        default_value_t = 300,
        allow_negative_numbers = true
    )]
    pub max_future_skew_secs: i64,

    /// A view lasting longer than this (end minus start) is invalid (`duration_too_long`).
    #[arg(
        long,
        env = "LANDFALL_MAX_DURATION_SECS",
        default_value_t = 86_400,
        allow_negative_numbers = true
    )]
    pub max_duration_secs: i64,

    /// The campaign table changed on purpose: apply it to the windows that land from now on,
    /// and keep the files already landed with the table the group's commits name (their
    /// footers say which). Without it, a changed table is refused at start-up.
    #[arg(long, env = "LANDFALL_ACCEPT_CAMPAIGNS_CHANGE")]
    pub accept_campaigns_change: bool,

    /// How often state is checkpointed and offsets committed, in milliseconds.
    #[arg(
        long,
        env = "LANDFALL_CHECKPOINT_INTERVAL_MS",
        default_value_t = 5000,
        allow_negative_numbers = true
    )]
    pub checkpoint_interval_ms: i64,

    /// Exit 0 once every partition is caught up, idle windows have landed and offsets are
    /// committed (batch mode, for tests, benchmarks and the demo).
    #[arg(long, env = "LANDFALL_EXIT_ON_IDLE")]
    pub exit_on_idle: bool,

    /// Serve /metrics, /healthz and /readyz on this address, e.g. 0.0.0.0:9464 [default: off]
    #[arg(long, env = "LANDFALL_HTTP_ADDR", value_name = "HOST:PORT")]
    pub http_addr: Option<String>,

    /// BENCHMARK ONLY: no fsync, no state flush, no Kafka commits. Not exactly-once.
    #[arg(long, hide = true, env = "LANDFALL_UNSAFE_NO_DURABILITY")]
    pub unsafe_no_durability: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WindowsArgs {
    /// Report directory to read.
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Windows starting at or after this time: RFC 3339, "YYYY-MM-DD[ HH:MM[:SS]]" (UTC), now,
    /// or before now, like -1h, -15m, -2d [default: the first window]
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: Option<String>,

    /// Windows starting before this time (exclusive); same forms as --from [default: no end]
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub to: Option<String>,

    /// Only this network id.
    #[arg(long, value_name = "ID")]
    pub network: Option<String>,

    /// Only this campaign id.
    #[arg(long, value_name = "ID")]
    pub campaign: Option<String>,

    /// Output: a table like Spark's show(), CSV with a header, or JSON (an array of objects
    /// named like the Parquet columns, timestamps in RFC 3339).
    #[arg(long, value_enum, default_value_t = WindowsFormat::Table)]
    pub format: WindowsFormat,

    /// How many rows the table prints (0 for all); csv and json print every row.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,

    /// Print what the query read and skipped (directories, files, row groups, rows) on stderr.
    #[arg(long)]
    pub explain: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WindowsFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Report directory to answer from.
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Serve /windows and /healthz on this address.
    #[arg(
        long,
        env = "LANDFALL_HTTP_ADDR",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9466"
    )]
    pub http_addr: String,
}

#[derive(Debug, Clone, Args)]
pub struct PeekArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// How many records to print.
    #[arg(long, env = "LANDFALL_PEEK_LIMIT", default_value_t = 5)]
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Report directory to audit.
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Rejects dataset to audit.
    #[arg(long, env = "LANDFALL_REJECTS_DIR", default_value = "data/rejects")]
    pub rejects_dir: std::path::PathBuf,

    /// Consumer group that wrote the output. Its committed offsets are checked (nothing below
    /// them may be unlanded), and its commit metadata supplies the window settings.
    #[arg(long, env = "LANDFALL_GROUP")]
    pub group: Option<String>,

    /// Window size in seconds [default: the group's, else 60].
    #[arg(long, allow_negative_numbers = true)]
    pub window_secs: Option<i64>,

    /// Allowed lateness in seconds [default: the group's, else 60].
    #[arg(long, allow_negative_numbers = true)]
    pub allowed_lateness_secs: Option<i64>,

    /// Maximum future skew in seconds [default: the group's, else 300].
    #[arg(long, allow_negative_numbers = true)]
    pub max_future_skew_secs: Option<i64>,

    /// Maximum view duration in seconds [default: the group's, else 86400].
    #[arg(long, allow_negative_numbers = true)]
    pub max_duration_secs: Option<i64>,

    /// Audit only records below these offsets, as `partition:offset,...` [default: the end
    /// of each partition when the audit starts].
    #[arg(long, value_name = "P:OFFSET,...")]
    pub until: Option<String>,

    /// Give up if the log cannot be read to its end within this many seconds (an open
    /// transaction holds read_committed readers back).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout_secs: u64,

    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,

    /// Discrepancies listed per kind in the text report.
    #[arg(long, default_value_t = 20)]
    pub max_listed: usize,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Everything in one run: producer (bare versus transactional) and consumer drain (bare,
    /// exactly-once, no durability); one table, the ratios, one JSON file.
    All(BenchAllArgs),
    /// Producer throughput: bare rdkafka versus `landfall produce`, same records, one run.
    Produce(BenchProduceArgs),
    /// Consumer drain: bare rdkafka versus `landfall consume`, with and without durability.
    Consume(BenchConsumeArgs),
    /// Scale-out: the same topic drained by 1, 2, … instances in one group.
    Scale(BenchScaleArgs),
}

/// What every benchmark takes: the broker, the topics' partitions, and where to write JSON.
#[derive(Debug, Clone, Args)]
pub struct BenchCommon {
    #[command(flatten)]
    pub kafka: KafkaArgs,

    /// Partitions of the benchmark topics.
    #[arg(long, env = "LANDFALL_BENCH_PARTITIONS", default_value_t = 6)]
    pub partitions: i32,

    /// Write the figures as JSON to this file.
    #[arg(long, env = "LANDFALL_BENCH_JSON")]
    pub json: Option<std::path::PathBuf>,
}

/// How the transactional producer is run in a producer measurement.
#[derive(Debug, Clone, Args)]
pub struct BenchProducer {
    /// Records per transaction for the transactional producer.
    #[arg(long, env = "LANDFALL_TXN_SIZE", default_value_t = 1000)]
    pub txn_size: usize,

    /// Transactional producers side by side in the landfall measurement.
    #[arg(long, env = "LANDFALL_PRODUCERS", default_value_t = 4)]
    pub producers: usize,
}

#[derive(Debug, Clone, Args)]
pub struct BenchAllArgs {
    #[command(flatten)]
    pub common: BenchCommon,

    /// Events per measurement.
    #[arg(long, env = "LANDFALL_BENCH_EVENTS", default_value_t = 5_000_000)]
    pub events: u64,

    #[command(flatten)]
    pub producer: BenchProducer,

    /// Scratch directory for the consumers' output (removed afterwards).
    #[arg(long, env = "LANDFALL_BENCH_DIR", default_value = "target/bench")]
    pub work_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BenchConsumeArgs {
    #[command(flatten)]
    pub common: BenchCommon,

    /// Events to pre-load.
    #[arg(long, env = "LANDFALL_BENCH_EVENTS", default_value_t = 2_000_000)]
    pub events: u64,

    /// Scratch directory for the consumers' output (removed afterwards).
    #[arg(long, env = "LANDFALL_BENCH_DIR", default_value = "target/bench")]
    pub work_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BenchScaleArgs {
    #[command(flatten)]
    pub common: BenchCommon,

    /// Events to pre-load.
    #[arg(long, env = "LANDFALL_BENCH_EVENTS", default_value_t = 2_000_000)]
    pub events: u64,

    /// Instance counts to measure, in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub instances: Vec<usize>,

    /// Scratch directory for the consumers' output (removed afterwards).
    #[arg(long, env = "LANDFALL_BENCH_DIR", default_value = "target/bench")]
    pub work_dir: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct BenchProduceArgs {
    #[command(flatten)]
    pub common: BenchCommon,

    /// Records to send in each measurement.
    #[arg(long, env = "LANDFALL_BENCH_EVENTS", default_value_t = 1_000_000)]
    pub events: u64,

    #[command(flatten)]
    pub producer: BenchProducer,
}
