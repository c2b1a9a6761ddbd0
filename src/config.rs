//! Validation: raw command-line settings become typed configurations. Every problem is reported
//! at once, each naming the setting and the bad value.

use std::fmt;
use std::time::Duration;

use crate::cli::{
    ClockArg, ConsumeArgs, KafkaArgs, ProduceArgs, ServeArgs, VerifyArgs, WindowsArgs,
};
use crate::consume::decode::Limits;
use crate::consume::pipeline::ConsumeConfig;
use crate::consume::window::WindowConfig;
use crate::identity::Settings;
use crate::ops::kafka::KafkaSettings;
use crate::produce::generator::GeneratorConfig;
use crate::produce::producer::{Clock, ProduceConfig};
use crate::query::Query;
use crate::verify::VerifyConfig;

pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
pub const DEFAULT_TOPIC: &str = "view-log-events-1";

/// The ranges of the numeric settings (README, "Settings and their ranges").
pub const MAX_CONNECT_TIMEOUT_SECS: u64 = 3_600;
pub const MAX_WINDOW_SECS: i64 = 86_400;
pub const MAX_LATENESS_SECS: i64 = 7 * 86_400;
pub const MAX_IDLE_TIMEOUT_SECS: i64 = 86_400;
pub const MAX_FUTURE_SKEW_SECS: i64 = 365 * 86_400;
pub const MAX_DURATION_SECS: i64 = 365 * 86_400;
pub const DEFAULT_MAX_DURATION_SECS: i64 = 86_400;
pub const MAX_CHECKPOINT_INTERVAL_MS: i64 = 3_600_000;
pub const MAX_PARTITIONS: i32 = 10_000;
pub const MAX_TXN_SIZE: i64 = 1_000_000;
pub const MAX_TXN_MS: u64 = 3_600_000;
pub const MAX_OUT_OF_ORDER_SECS: u64 = 7 * 86_400;

/// Every problem found in the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems while settings are checked one by one.
#[derive(Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn push(&mut self, setting: &str, env: &str, value: impl fmt::Display, why: &str) {
        self.0.push(format!("{setting} ({env}) = {value}: {why}"));
    }

    /// A flag with no environment variable.
    pub fn flag(&mut self, setting: &str, value: impl fmt::Display, why: &str) {
        self.0.push(format!("{setting} = {value}: {why}"));
    }

    pub fn fraction(&mut self, setting: &str, env: &str, v: f64) -> f64 {
        if !(0.0..=1.0).contains(&v) {
            self.push(setting, env, v, "must be a fraction between 0 and 1");
        }
        v
    }

    /// Checks that `v` lies in `lo..=hi`; out of range is a problem naming the flag, its
    /// variable, the value and the range with its unit. Returns `v` clamped into the range, so
    /// later arithmetic (seconds into milliseconds) cannot overflow while problems are collected.
    pub fn range<T>(&mut self, setting: &str, env: &str, v: T, lo: T, hi: T, unit: &str) -> T
    where
        T: PartialOrd + Copy + fmt::Display,
    {
        if v < lo || v > hi {
            self.push(
                setting,
                env,
                v,
                &format!("must be between {lo} and {hi} {unit}"),
            );
            return if v < lo { lo } else { hi };
        }
        v
    }

    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError { problems: self.0 })
        }
    }
}

/// `--http-addr`: an address to listen on, or nothing.
fn http_addr(value: &Option<String>, problems: &mut Problems) -> Option<std::net::SocketAddr> {
    let v = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
    match v.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(
                "--http-addr",
                "LANDFALL_HTTP_ADDR",
                v,
                "expected HOST:PORT with a numeric host, e.g. 0.0.0.0:9464 or 127.0.0.1:9464",
            );
            None
        }
    }
}

/// `landfall windows` filters: every bad one is reported, each naming its flag. `now_us` is
/// what relative times such as `-1h` count back from.
pub fn windows_query(args: &WindowsArgs, now_us: i64) -> Result<Query, ConfigError> {
    let mut p = Problems::default();
    let q = Query::parse(
        args.from.as_deref(),
        args.to.as_deref(),
        args.network.as_deref(),
        args.campaign.as_deref(),
        now_us,
    )
    .unwrap_or_else(|bad| {
        for b in bad {
            p.flag(&format!("--{}", b.name), format!("{:?}", b.value), &b.why);
        }
        Query::default()
    });
    p.finish(q)
}

/// `landfall serve`: the address to listen on.
pub fn serve_addr(args: &ServeArgs) -> Result<std::net::SocketAddr, ConfigError> {
    let mut p = Problems::default();
    if args.http_addr.trim().is_empty() {
        p.push(
            "--http-addr",
            "LANDFALL_HTTP_ADDR",
            "\"\"",
            "must not be empty",
        );
    }
    match http_addr(&Some(args.http_addr.clone()), &mut p) {
        Some(addr) => p.finish(addr),
        None => Err(ConfigError { problems: p.0 }),
    }
}

/// Reads the first of several environment variables that is set and not empty.
fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .find(|v| !v.trim().is_empty())
}

pub fn kafka_settings(args: &KafkaArgs, problems: &mut Problems) -> KafkaSettings {
    let brokers = args
        .brokers
        .clone()
        .or_else(|| env_first(&["LANDFALL_BROKERS", "BOOTSTRAP_SERVERS"]))
        .unwrap_or_else(|| DEFAULT_BROKERS.to_string());
    let topic = args
        .topic
        .clone()
        .or_else(|| env_first(&["LANDFALL_TOPIC", "TOPIC_NAME"]))
        .unwrap_or_else(|| DEFAULT_TOPIC.to_string());
    if brokers.trim().is_empty() {
        problems.push("--brokers", "LANDFALL_BROKERS", "\"\"", "must not be empty");
    }
    if topic.is_empty()
        || topic.len() > 249
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        problems.push(
            "--topic",
            "LANDFALL_TOPIC",
            format!("{topic:?}"),
            "a Kafka topic name is 1 to 249 characters of [A-Za-z0-9._-]",
        );
    }
    let connect_timeout_secs = problems.range(
        "--connect-timeout-secs",
        "LANDFALL_CONNECT_TIMEOUT_SECS",
        args.connect_timeout_secs,
        1,
        MAX_CONNECT_TIMEOUT_SECS,
        "seconds",
    );
    KafkaSettings {
        brokers,
        topic,
        connect_timeout: Duration::from_secs(connect_timeout_secs),
    }
}

/// A topic to create before producing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
}

/// Kafka settings alone, for commands that need nothing else validated.
pub fn kafka_only(args: &KafkaArgs) -> Result<KafkaSettings, ConfigError> {
    let mut problems = Problems::default();
    let kafka = kafka_settings(args, &mut problems);
    problems.finish(kafka)
}

pub fn produce_config(
    args: &ProduceArgs,
) -> Result<(ProduceConfig, Option<TopicSpec>), ConfigError> {
    let mut p = Problems::default();
    let kafka = kafka_settings(&args.kafka, &mut p);

    let count = match args.count {
        Some(c) => c,
        None => match env_first(&["LANDFALL_COUNT", "RECORDS_LIMIT"]) {
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                p.push(
                    "--count",
                    "LANDFALL_COUNT / RECORDS_LIMIT",
                    &v,
                    "must be a whole number",
                );
                0
            }),
            None => 0,
        },
    };
    if !(args.rate.is_finite() && (0.0..=10_000_000.0).contains(&args.rate)) {
        p.push(
            "--rate",
            "LANDFALL_RATE",
            args.rate,
            "must be zero (as fast as possible) or up to 10000000 records per second",
        );
    }
    let clock = match args.clock {
        ClockArg::Real => Clock::Real,
        ClockArg::Simulated => {
            let start_ms = match chrono::DateTime::parse_from_rfc3339(&args.sim_start) {
                Ok(t) => t.timestamp_millis(),
                Err(e) => {
                    p.push(
                        "--sim-start",
                        "LANDFALL_SIM_START",
                        &args.sim_start,
                        &format!("not an RFC 3339 time ({e})"),
                    );
                    0
                }
            };
            let eps = args.sim_events_per_sec;
            if !(eps.is_finite() && eps > 0.0 && eps <= 1e9) {
                p.push(
                    "--sim-events-per-sec",
                    "LANDFALL_SIM_EVENTS_PER_SEC",
                    eps,
                    "must be a positive number of records per simulated second, at most 1000000000",
                );
            }
            Clock::Simulated {
                start_ms,
                events_per_sec: args.sim_events_per_sec,
            }
        }
    };
    let late_fraction = p.fraction(
        "--late-fraction",
        "LANDFALL_LATE_FRACTION",
        args.late_fraction,
    );
    let invalid_fraction = p.fraction(
        "--invalid-fraction",
        "LANDFALL_INVALID_FRACTION",
        args.invalid_fraction,
    );
    let unknown_campaign_fraction = p.fraction(
        "--unknown-campaign-fraction",
        "LANDFALL_UNKNOWN_CAMPAIGN_FRACTION",
        args.unknown_campaign_fraction,
    );
    if late_fraction + invalid_fraction + unknown_campaign_fraction > 1.0 {
        p.push(
            "--late-fraction + --invalid-fraction + --unknown-campaign-fraction",
            "LANDFALL_*_FRACTION",
            late_fraction + invalid_fraction + unknown_campaign_fraction,
            "the three fractions must add up to at most 1",
        );
    }
    let abort_fraction = p.fraction(
        "--abort-fraction",
        "LANDFALL_ABORT_FRACTION",
        args.abort_fraction,
    );
    let txn_size = p.range(
        "--txn-size",
        "LANDFALL_TXN_SIZE",
        args.txn_size,
        1,
        MAX_TXN_SIZE,
        "records",
    );
    let partitions = p.range(
        "--partitions",
        "LANDFALL_PARTITIONS",
        args.partitions,
        1,
        MAX_PARTITIONS,
        "partitions",
    );
    let replication = p.range(
        "--replication-factor",
        "LANDFALL_REPLICATION_FACTOR",
        args.replication_factor,
        1,
        i16::MAX as i32,
        "replicas",
    );
    let out_of_order_secs = p.range(
        "--out-of-order-secs",
        "LANDFALL_OUT_OF_ORDER_SECS",
        args.out_of_order_secs,
        0,
        MAX_OUT_OF_ORDER_SECS,
        "seconds",
    );
    let progress_secs = p.range(
        "--progress-interval-secs",
        "LANDFALL_PROGRESS_INTERVAL_SECS",
        args.progress_interval_secs,
        1,
        86_400,
        "seconds",
    );
    if args.transactional_id.trim().is_empty() {
        p.push(
            "--transactional-id",
            "LANDFALL_TRANSACTIONAL_ID",
            "\"\"",
            "must not be empty",
        );
    }
    let transaction_timeout_ms = p.range(
        "--transaction-timeout-ms",
        "LANDFALL_TRANSACTION_TIMEOUT_MS",
        args.transaction_timeout_ms,
        1_000,
        MAX_TXN_MS,
        "milliseconds",
    );
    let txn_max_ms = p.range(
        "--txn-max-ms",
        "LANDFALL_TXN_MAX_MS",
        args.txn_max_ms,
        1,
        MAX_TXN_MS,
        "milliseconds",
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    let topic = args.create_topic.then_some(TopicSpec {
        partitions,
        replication,
    });
    let cfg = ProduceConfig {
        kafka,
        count,
        rate: args.rate,
        clock,
        generator: GeneratorConfig {
            seed,
            out_of_order_secs,
            late_fraction,
            invalid_fraction,
            unknown_campaign_fraction,
            ..GeneratorConfig::default()
        },
        txn_size: txn_size as usize,
        txn_max: Duration::from_millis(txn_max_ms),
        abort_fraction,
        transactional_id: args.transactional_id.clone(),
        transaction_timeout: Duration::from_millis(transaction_timeout_ms),
        progress_interval: Duration::from_secs(progress_secs),
        http_addr: http_addr(&args.http_addr, &mut p),
        producers: args.producers.clamp(1, 64) as usize,
    };
    if !(1..=64).contains(&args.producers) {
        p.push(
            "--producers",
            "LANDFALL_PRODUCERS",
            args.producers,
            "must be between 1 and 64",
        );
    }
    p.finish((cfg, topic))
}

pub fn consume_config(args: &ConsumeArgs) -> Result<ConsumeConfig, ConfigError> {
    let mut p = Problems::default();
    let kafka = kafka_settings(&args.kafka, &mut p);
    let window_secs = p.range(
        "--window-secs",
        "LANDFALL_WINDOW_SECS",
        args.window_secs,
        1,
        MAX_WINDOW_SECS,
        "seconds",
    );
    let lateness_secs = p.range(
        "--allowed-lateness-secs",
        "LANDFALL_ALLOWED_LATENESS_SECS",
        args.allowed_lateness_secs,
        0,
        MAX_LATENESS_SECS,
        "seconds",
    );
    let idle_secs = p.range(
        "--idle-timeout-secs",
        "LANDFALL_IDLE_TIMEOUT_SECS",
        args.idle_timeout_secs,
        0,
        MAX_IDLE_TIMEOUT_SECS,
        "seconds",
    );
    let skew_secs = p.range(
        "--max-future-skew-secs",
        "LANDFALL_MAX_FUTURE_SKEW_SECS",
        args.max_future_skew_secs,
        0,
        MAX_FUTURE_SKEW_SECS,
        "seconds",
    );
    let duration_secs = p.range(
        "--max-duration-secs",
        "LANDFALL_MAX_DURATION_SECS",
        args.max_duration_secs,
        1,
        MAX_DURATION_SECS,
        "seconds",
    );
    let checkpoint_ms = p.range(
        "--checkpoint-interval-ms",
        "LANDFALL_CHECKPOINT_INTERVAL_MS",
        args.checkpoint_interval_ms,
        10,
        MAX_CHECKPOINT_INTERVAL_MS,
        "milliseconds",
    );
    if args.group.trim().is_empty() {
        p.push("--group", "LANDFALL_GROUP", "\"\"", "must not be empty");
    }
    if args.campaigns.is_dir() {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            args.campaigns.display(),
            "is a directory; give the campaign table's CSV file",
        );
    } else if !args.campaigns.is_file() {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            args.campaigns.display(),
            "no such file",
        );
    } else if let Err(e) = crate::consume::enrich::CampaignTable::load(&args.campaigns) {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            args.campaigns.display(),
            &e.to_string(),
        );
    }
    let same = |a: &std::path::Path, b: &std::path::Path| a.starts_with(b) || b.starts_with(a);
    if same(&args.output_dir, &args.rejects_dir) {
        p.push("--rejects-dir", "LANDFALL_REJECTS_DIR", args.rejects_dir.display(), "must be outside --output-dir (and not contain it), so report globs never match rejects");
    }
    if same(&args.output_dir, &args.state_dir) {
        p.push(
            "--state-dir",
            "LANDFALL_STATE_DIR",
            args.state_dir.display(),
            "must be outside --output-dir",
        );
    }
    let cfg = ConsumeConfig {
        kafka,
        group: args.group.clone(),
        instance_id: args.instance_id.clone().filter(|s| !s.trim().is_empty()),
        assignment_strategy: args.assignment_strategy,
        campaigns: args.campaigns.clone(),
        output_dir: args.output_dir.clone(),
        rejects_dir: args.rejects_dir.clone(),
        state_dir: args.state_dir.clone(),
        window: WindowConfig {
            size_ms: window_secs * 1000,
            lateness_ms: lateness_secs * 1000,
        },
        idle_timeout: Duration::from_secs(idle_secs as u64),
        max_future_skew_ms: skew_secs * 1000,
        max_duration_ms: duration_secs * 1000,
        accept_campaigns_change: args.accept_campaigns_change,
        checkpoint_interval: Duration::from_millis(checkpoint_ms as u64),
        exit_on_idle: args.exit_on_idle,
        unsafe_no_durability: args.unsafe_no_durability,
        http_addr: http_addr(&args.http_addr, &mut p),
    };
    p.finish(cfg)
}

/// Validates `landfall verify` settings. Window settings left out come from the group's commit
/// metadata (`group_signature`), else the consumer's defaults; given ones must agree with it.
pub fn verify_config(
    args: &VerifyArgs,
    group_signature: Option<&str>,
) -> Result<VerifyConfig, ConfigError> {
    let mut p = Problems::default();
    let kafka = kafka_settings(&args.kafka, &mut p);
    let group = group_signature.and_then(Settings::parse);
    // Each setting: the flag if given (in range, and agreeing with the group's), else the
    // group's, else the consumer's default. In milliseconds.
    let mut pick =
        |flag: &str, given: Option<i64>, group: Option<i64>, default: i64, lo: i64, hi: i64| {
            let given = given.map(|g| p.range(flag, "-", g, lo, hi, "seconds") * 1000);
            match (given, group) {
                (Some(g), Some(c)) if g != c => {
                    p.push(
                        flag,
                        "-",
                        g / 1000,
                        &format!(
                        "the group committed with {} s; the audit must use the consumer's settings",
                        c / 1000
                    ),
                    );
                    g
                }
                (Some(g), _) => g,
                (None, Some(c)) => c,
                (None, None) => default * 1000,
            }
        };
    let size_ms = pick(
        "--window-secs",
        args.window_secs,
        group.map(|g| g.window.size_ms),
        60,
        1,
        MAX_WINDOW_SECS,
    );
    let lateness_ms = pick(
        "--allowed-lateness-secs",
        args.allowed_lateness_secs,
        group.map(|g| g.window.lateness_ms),
        60,
        0,
        MAX_LATENESS_SECS,
    );
    let skew_ms = pick(
        "--max-future-skew-secs",
        args.max_future_skew_secs,
        group.map(|g| g.max_future_skew_ms),
        300,
        0,
        MAX_FUTURE_SKEW_SECS,
    );
    let duration_ms = pick(
        "--max-duration-secs",
        args.max_duration_secs,
        group.and_then(|g| g.max_duration_ms),
        DEFAULT_MAX_DURATION_SECS,
        1,
        MAX_DURATION_SECS,
    );
    let timeout_secs = p.range(
        "--timeout-secs",
        "-",
        args.timeout_secs,
        1,
        86_400,
        "seconds",
    );
    let mut until = std::collections::BTreeMap::new();
    if let Some(spec) = &args.until {
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            match item.split_once(':').and_then(|(a, b)| {
                Some((a.trim().parse::<i32>().ok()?, b.trim().parse::<i64>().ok()?))
            }) {
                Some((part, off)) if part >= 0 && off >= 0 => {
                    until.insert(part, off);
                }
                _ => p.push(
                    "--until",
                    "-",
                    item,
                    "expected partition:offset, e.g. 0:1200,1:980",
                ),
            }
        }
    }
    if args.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
        p.push("--group", "LANDFALL_GROUP", "\"\"", "must not be empty");
    }
    let cfg = VerifyConfig {
        kafka,
        report_dir: args.output_dir.clone(),
        rejects_dir: args.rejects_dir.clone(),
        window: WindowConfig {
            size_ms,
            lateness_ms,
        },
        limits: Limits {
            max_future_skew_ms: skew_ms,
            max_duration_ms: duration_ms,
        },
        group: args.group.clone(),
        until,
        timeout: Duration::from_secs(timeout_secs),
    };
    p.finish(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn verify_args(extra: &[&str]) -> VerifyArgs {
        let mut argv = vec!["landfall", "verify"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Verify(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn verify_takes_window_settings_from_the_group_and_refuses_others() {
        let sig = "w30000-l10000-f5000-d7000";
        let cfg = verify_config(&verify_args(&[]), Some(sig)).unwrap();
        assert_eq!(cfg.window.size_ms, 30_000);
        assert_eq!(cfg.window.lateness_ms, 10_000);
        assert_eq!(cfg.limits.max_future_skew_ms, 5_000);
        assert_eq!(cfg.limits.max_duration_ms, 7_000);

        let defaults = verify_config(&verify_args(&[]), None).unwrap();
        assert_eq!(defaults.window.size_ms, 60_000);
        assert_eq!(defaults.limits.max_future_skew_ms, 300_000);
        assert_eq!(defaults.limits.max_duration_ms, 86_400_000);
        // A group of a version before the duration bound: the default bound.
        let old = verify_config(&verify_args(&[]), Some("w30000-l10000-f5000")).unwrap();
        assert_eq!(old.limits.max_duration_ms, 86_400_000);

        let err = verify_config(
            &verify_args(&["--window-secs", "60", "--until", "0:5,x"]),
            Some(sig),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("--window-secs") && text.contains("30 s"),
            "{text}"
        );
        assert!(text.contains("--until") && text.contains("x"), "{text}");

        let until = verify_config(&verify_args(&["--until", "0:5,2:7"]), None).unwrap();
        assert_eq!(until.until, [(0, 5), (2, 7)].into_iter().collect());
    }

    fn consume_args(extra: &[&str]) -> ConsumeArgs {
        let table = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/campaigns_dict/campaigns.csv"
        );
        let mut argv = vec!["landfall", "consume", "--campaigns", table];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Consume(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn every_numeric_setting_has_a_range_and_out_of_range_names_the_flag() {
        let huge = i64::MAX.to_string();
        let err = consume_config(&consume_args(&[
            "--window-secs",
            &huge,
            "--allowed-lateness-secs",
            &huge,
            "--max-future-skew-secs",
            "-1",
            "--max-duration-secs",
            "0",
            "--idle-timeout-secs",
            &huge,
            "--checkpoint-interval-ms",
            "0",
        ]))
        .unwrap_err();
        let text = err.to_string();
        for flag in [
            "--window-secs",
            "--allowed-lateness-secs",
            "--max-future-skew-secs",
            "--max-duration-secs",
            "--idle-timeout-secs",
            "--checkpoint-interval-ms",
        ] {
            assert!(
                text.contains(&format!("{flag} (")),
                "{flag} missing from:\n{text}"
            );
        }
        assert!(
            text.contains("must be between 1 and 86400 seconds"),
            "{text}"
        );
        let ok = consume_config(&consume_args(&["--window-secs", "86400"])).unwrap();
        assert_eq!(ok.window.size_ms, 86_400_000);
        assert_eq!(ok.max_duration_ms, 86_400_000);
    }
}
