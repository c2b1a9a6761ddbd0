//! The command line: raw settings as the user typed them (flag, then environment variable, then
//! default). `config` validates them into typed configurations.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

mod bench;
mod consume;
mod kafka;
pub mod lenient;
mod produce;
mod store;

pub use bench::*;
pub use consume::*;
pub use kafka::*;
pub use produce::*;
pub use store::*;

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

/// The command line as `landfall` parses it and shows it in `--help`: every environment
/// variable is shown one way, `[env: NAME]` right after the flag's description (before a
/// default written there), never with its current value, which may be a secret. The flags read
/// by two variables (`--brokers`, `--topic`, `--count`) write theirs the same way by hand.
pub fn command() -> clap::Command {
    show_env(Cli::command())
}

fn show_env(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|arg| {
        let Some(env) = arg.get_env().map(|e| e.to_string_lossy().into_owned()) else {
            return arg;
        };
        let mark = |text: String| match text.find(" [default:").or_else(|| text.find("\n[default:"))
        {
            Some(at) => format!("{} [env: {env}]{}", &text[..at], &text[at..]),
            None => format!("{} [env: {env}]", text.trim_end().trim_end_matches('.')),
        };
        let help = arg.get_help().map(|h| mark(h.to_string()));
        let long = arg.get_long_help().map(|h| mark(h.to_string()));
        let arg = arg.hide_env(true);
        let arg = match help {
            Some(h) => arg.help(h),
            None => arg,
        };
        match long {
            Some(h) => arg.long_help(h),
            None => arg,
        }
    })
    .mut_subcommands(show_env)
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

#[derive(Debug, Clone, Args)]
pub struct WindowsArgs {
    /// Report directory to read: a path, or an object-store URL (s3://bucket/prefix, gs://…,
    /// az://…).
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

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
    /// Report directory to answer from: a path, or an object-store URL (s3://bucket/prefix,
    /// gs://…, az://…).
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

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

    /// Report directory to audit: a path, or an object-store URL (s3://bucket/prefix, …).
    #[arg(long, env = "LANDFALL_OUTPUT_DIR", default_value = "data/views_report")]
    pub output_dir: std::path::PathBuf,

    /// Rejects dataset to audit.
    #[arg(long, env = "LANDFALL_REJECTS_DIR", default_value = "data/rejects")]
    pub rejects_dir: std::path::PathBuf,

    #[command(flatten)]
    pub store: StoreArgs,

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

#[cfg(test)]
mod tests {
    /// Every subcommand, outermost first, with its path (`"bench consume"`).
    fn all(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), cmd.clone()));
        for sub in cmd.get_subcommands() {
            all(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_help_line_shows_its_variable_one_way() {
        let mut cmds = Vec::new();
        all(&super::command(), "landfall".into(), &mut cmds);
        for (path, mut cmd) in cmds {
            for long in [false, true] {
                let help = if long {
                    cmd.render_long_help()
                } else {
                    cmd.render_help()
                }
                .to_string();
                // clap's own form shows the current value: `[env: NAME=value]`.
                for shown in help.split("[env: ").skip(1) {
                    let names = &shown[..shown.find(']').unwrap_or(shown.len())];
                    assert!(!names.contains('='), "{path}: a value shown:\n{help}");
                }
                for arg in cmd.get_arguments() {
                    let Some(env) = arg.get_env().filter(|_| !arg.is_hide_set()) else {
                        continue;
                    };
                    let mark = format!("[env: {}]", env.to_string_lossy());
                    assert!(help.contains(&mark), "{path}: {mark} missing:\n{help}");
                }
            }
        }
    }

    /// The services (`produce`, `consume`, `serve`) are configured by their environment in
    /// compose and Kubernetes, so each of their settings has a variable.
    #[test]
    fn every_service_setting_has_a_variable() {
        let cmd = super::command();
        for name in ["produce", "consume", "serve"] {
            let sub = cmd.find_subcommand(name).unwrap();
            let help = sub.clone().render_long_help().to_string();
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version", "kafka_config"].contains(&id) || arg.get_env().is_some() {
                    continue;
                }
                let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                assert!(
                    text.contains("[env: "),
                    "{name} --{id} has no variable:\n{help}"
                );
            }
        }
    }
}
