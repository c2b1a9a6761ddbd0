//! Validation: raw command-line settings become typed configurations. Every problem is reported
//! at once, each naming the setting and the bad value.

use std::fmt;
use std::time::Duration;

use crate::cli::{ClockArg, KafkaArgs, ProduceArgs};
use crate::generator::GeneratorConfig;
use crate::kafka::KafkaSettings;
use crate::producer::{Clock, ProduceConfig};

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
    };
    p.finish((cfg, topic))
}
