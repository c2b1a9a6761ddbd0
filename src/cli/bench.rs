//! `landfall bench` and its measurements.

use clap::{Args, Subcommand};

use super::KafkaArgs;

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

    /// Records per simulated second in the pre-loaded topic, one topic and one set of drains
    /// per value, side by side: 1000 makes 60,000-record windows (few files), the generator's
    /// default of 10 makes 600-record windows (many files).
    #[arg(
        long,
        env = "LANDFALL_BENCH_SIM_EVENTS_PER_SEC",
        value_delimiter = ',',
        default_value = "10,1000",
        value_name = "N[,N...]"
    )]
    pub sim_events_per_sec: Vec<f64>,

    /// Leave the drains' output in the work directory (to look at, or because removing
    /// thousands of files slows the next benchmark's file creation for minutes on ext4).
    #[arg(long, env = "LANDFALL_BENCH_KEEP_OUTPUT")]
    pub keep_output: bool,

    /// Also land to this object-store prefix (e.g. s3://landfall/bench, with the store's
    /// environment set) and compare with local disk. Each run writes under <prefix>/<run id>
    /// and leaves it there.
    #[arg(long, env = "LANDFALL_BENCH_OBJECT_STORE", value_name = "URL")]
    pub object_store: Option<String>,

    /// Rounds of drains of each pre-loaded topic, one after another (each round: bare,
    /// exactly-once, without durability, to the object store, bare again). The ratios printed
    /// are the medians of the rounds' ratios, and every round's are listed: on a shared
    /// machine one drain can take 20% longer than the same drain a minute later.
    #[arg(long, env = "LANDFALL_BENCH_ROUNDS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
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
