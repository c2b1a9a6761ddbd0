//! Validation: raw command-line settings become typed configurations. Every problem is reported
//! at once, each naming the setting and the bad value.

use std::fmt;
use std::time::Duration;

use crate::cli::{
    ClockArg, ConsumeArgs, KafkaArgs, ProduceArgs, ServeArgs, VerifyArgs, WindowsArgs,
};
use crate::generator::GeneratorConfig;
use crate::kafka::KafkaSettings;
use crate::pipeline::{parse_signature, ConsumeConfig};
use crate::producer::{Clock, ProduceConfig};
use crate::verify::VerifyConfig;
use crate::window::WindowConfig;
use crate::windows::Query;

pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
pub const DEFAULT_TOPIC: &str = "view-log-events-1";

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
    if args.connect_timeout_secs == 0 {
        problems.push(
            "--connect-timeout-secs",
            "LANDFALL_CONNECT_TIMEOUT_SECS",
            0,
            "must be at least 1",
        );
    }
    KafkaSettings {
        brokers,
        topic,
        connect_timeout: Duration::from_secs(args.connect_timeout_secs),
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
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        p.push(
            "--rate",
            "LANDFALL_RATE",
            args.rate,
            "must be zero (as fast as possible) or a positive number of records per second",
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
            if !(args.sim_events_per_sec.is_finite() && args.sim_events_per_sec > 0.0) {
                p.push(
                    "--sim-events-per-sec",
                    "LANDFALL_SIM_EVENTS_PER_SEC",
                    args.sim_events_per_sec,
                    "must be a positive number",
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
    if args.txn_size < 1 {
        p.push(
            "--txn-size",
            "LANDFALL_TXN_SIZE",
            args.txn_size,
            "must be at least 1",
        );
    }
    if args.create_topic && args.partitions < 1 {
        p.push(
            "--partitions",
            "LANDFALL_PARTITIONS",
            args.partitions,
            "must be at least 1",
        );
    }
    if args.create_topic && args.replication_factor < 1 {
        p.push(
            "--replication-factor",
            "LANDFALL_REPLICATION_FACTOR",
            args.replication_factor,
            "must be at least 1",
        );
    }
    if args.transactional_id.trim().is_empty() {
        p.push(
            "--transactional-id",
            "LANDFALL_TRANSACTIONAL_ID",
            "\"\"",
            "must not be empty",
        );
    }
    if args.transaction_timeout_ms < 1000 {
        p.push(
            "--transaction-timeout-ms",
            "LANDFALL_TRANSACTION_TIMEOUT_MS",
            args.transaction_timeout_ms,
            "must be at least 1000",
        );
    }
    if args.txn_max_ms == 0 {
        p.push(
            "--txn-max-ms",
            "LANDFALL_TXN_MAX_MS",
            0,
            "must be at least 1",
        );
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let topic = args.create_topic.then_some(TopicSpec {
        partitions: args.partitions,
        replication: args.replication_factor,
    });
    let cfg = ProduceConfig {
        kafka,
        count,
        rate: args.rate,
        clock,
        generator: GeneratorConfig {
            seed,
            out_of_order_secs: args.out_of_order_secs,
            late_fraction,
            invalid_fraction,
            unknown_campaign_fraction,
            ..GeneratorConfig::default()
        },
        txn_size: args.txn_size.max(1) as usize,
        txn_max: Duration::from_millis(args.txn_max_ms),
        abort_fraction,
        transactional_id: args.transactional_id.clone(),
        transaction_timeout: Duration::from_millis(args.transaction_timeout_ms),
        progress_interval: Duration::from_secs(args.progress_interval_secs.max(1)),
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
    let positive = |p: &mut Problems, flag: &str, env: &str, v: i64| {
        if v <= 0 {
            p.push(flag, env, v, "must be a positive number");
        }
    };
    positive(
        &mut p,
        "--window-secs",
        "LANDFALL_WINDOW_SECS",
        args.window_secs,
    );
    if args.allowed_lateness_secs < 0 {
        p.push(
            "--allowed-lateness-secs",
            "LANDFALL_ALLOWED_LATENESS_SECS",
            args.allowed_lateness_secs,
            "must be zero or positive",
        );
    }
    if args.idle_timeout_secs < 0 {
        p.push(
            "--idle-timeout-secs",
            "LANDFALL_IDLE_TIMEOUT_SECS",
            args.idle_timeout_secs,
            "must be zero or positive",
        );
    }
    if args.max_future_skew_secs < 0 {
        p.push(
            "--max-future-skew-secs",
            "LANDFALL_MAX_FUTURE_SKEW_SECS",
            args.max_future_skew_secs,
            "must be zero or positive",
        );
    }
    positive(
        &mut p,
        "--checkpoint-interval-ms",
        "LANDFALL_CHECKPOINT_INTERVAL_MS",
        args.checkpoint_interval_ms,
    );
    if args.group.trim().is_empty() {
        p.push("--group", "LANDFALL_GROUP", "\"\"", "must not be empty");
    }
    if !args.campaigns.is_file() {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            args.campaigns.display(),
            "no such file",
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
            size_ms: args.window_secs.max(1) * 1000,
            lateness_ms: args.allowed_lateness_secs.max(0) * 1000,
        },
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(0) as u64),
        max_future_skew_ms: args.max_future_skew_secs.max(0) * 1000,
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms.max(1) as u64),
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
    let from_group = group_signature.and_then(parse_signature);
    let (group_window, group_skew) = match from_group {
        Some((w, f)) => (Some(w), Some(f)),
        None => (None, None),
    };
    let mut pick = |flag: &str, given: Option<i64>, group: Option<i64>, default: i64, min: i64| {
        let v = match (given, group) {
            (Some(g), Some(c)) if g * 1000 != c => {
                p.push(
                    flag,
                    "-",
                    g,
                    &format!(
                        "the group committed with {} s; the audit must use the consumer's settings",
                        c / 1000
                    ),
                );
                g * 1000
            }
            (Some(g), _) => g * 1000,
            (None, Some(c)) => c,
            (None, None) => default * 1000,
        };
        if v < min * 1000 {
            p.push(flag, "-", v / 1000, "out of range");
        }
        v
    };
    let size_ms = pick(
        "--window-secs",
        args.window_secs,
        group_window.map(|w| w.size_ms),
        60,
        1,
    );
    let lateness_ms = pick(
        "--allowed-lateness-secs",
        args.allowed_lateness_secs,
        group_window.map(|w| w.lateness_ms),
        60,
        0,
    );
    let skew_ms = pick(
        "--max-future-skew-secs",
        args.max_future_skew_secs,
        group_skew,
        300,
        0,
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
            size_ms: size_ms.max(1000),
            lateness_ms: lateness_ms.max(0),
        },
        max_future_skew_ms: skew_ms.max(0),
        group: args.group.clone(),
        until,
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
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
        let sig = "w30000-l10000-f5000";
        let cfg = verify_config(&verify_args(&[]), Some(sig)).unwrap();
        assert_eq!(cfg.window.size_ms, 30_000);
        assert_eq!(cfg.window.lateness_ms, 10_000);
        assert_eq!(cfg.max_future_skew_ms, 5_000);

        let defaults = verify_config(&verify_args(&[]), None).unwrap();
        assert_eq!(defaults.window.size_ms, 60_000);
        assert_eq!(defaults.max_future_skew_ms, 300_000);

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

    #[test]
    fn signatures_round_trip() {
        let (w, f) = parse_signature("w60000-l0-f300000").unwrap();
        assert_eq!((w.size_ms, w.lateness_ms, f), (60_000, 0, 300_000));
        assert!(parse_signature("w60000-l0").is_none());
        assert!(parse_signature("garbage").is_none());
    }
}
