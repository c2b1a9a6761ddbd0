//! `landfall consume`.

use clap::{Args, ValueEnum};

use super::KafkaArgs;

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

/// What makes a group of landed files durable on local disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// An fsync of every file (on a few threads at once): touches only Landfall's files.
    PerFile,
    /// One syncfs(2) per file system the group's files are on: much cheaper for many small
    /// files, but it writes back everything dirty on that file system and fails on a write
    /// error anywhere on it. For an output on a file system of its own.
    FileSystem,
}

impl From<Fsync> for crate::consume::sink::FsyncScope {
    fn from(f: Fsync) -> Self {
        match f {
            Fsync::PerFile => Self::PerFile,
            Fsync::FileSystem => Self::FileSystem,
        }
    }
}

impl From<AssignmentStrategy> for crate::ops::kafka::AssignmentStrategy {
    fn from(a: AssignmentStrategy) -> Self {
        match a {
            AssignmentStrategy::CooperativeSticky => Self::CooperativeSticky,
            AssignmentStrategy::Range => Self::Range,
            AssignmentStrategy::Roundrobin => Self::RoundRobin,
        }
    }
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

    /// Where a group with no committed offsets starts each partition: earliest, latest (the
    /// last stable offset), or a time (RFC 3339, YYYY-MM-DD[ HH:MM[:SS]] in UTC, or before now,
    /// like -2h): the first record at or after it. Resolved once and committed before anything
    /// lands; ignored, with a note, where the group has committed offsets.
    #[arg(
        long,
        env = "LANDFALL_START_FROM",
        default_value = "earliest",
        value_name = "WHERE",
        allow_hyphen_values = true
    )]
    pub start_from: String,

    /// Campaign table (CSV with network_id,campaign_id,campaign_name).
    #[arg(
        long,
        env = "LANDFALL_CAMPAIGNS",
        default_value = "data/campaigns_dict/campaigns.csv"
    )]
    pub campaigns: std::path::PathBuf,

    /// Report directory: finalized window files. A path, or an object-store URL:
    /// s3://bucket/prefix, gs://bucket/prefix, az://container/prefix.
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Rejects dataset: late and invalid records, outside the report directory. A path or an
    /// object-store URL, like --output-dir.
    #[arg(long, env = "LANDFALL_REJECTS_DIR", default_value = "data/rejects")]
    pub rejects_dir: std::path::PathBuf,

    #[command(flatten)]
    pub store: super::StoreArgs,

    /// Land to an object store that does not enforce "create only if absent" (its start-up
    /// probe fails): allowed only when one consumer at a time writes the prefix and nothing
    /// else does. Each file is then looked up before it is written.
    #[arg(long, env = "LANDFALL_ASSUME_SINGLE_WRITER")]
    pub assume_single_writer: bool,

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

    /// How a group of landed files is made durable on local disk: per-file (an fsync each) or
    /// file-system (one syncfs per file system: several times cheaper for many small files in
    /// a backfill, but it also writes back everything else dirty on that file system, and any
    /// write error on it stops the consumer; use it for an output on a file system of its own).
    /// Directories are fsynced either way.
    #[arg(long, env = "LANDFALL_FSYNC", value_enum, default_value = "per-file")]
    pub fsync: Fsync,

    /// BENCHMARK ONLY: no fsync, no state flush, no Kafka commits. Not exactly-once.
    #[arg(long, hide = true, env = "LANDFALL_UNSAFE_NO_DURABILITY")]
    pub unsafe_no_durability: bool,
}
