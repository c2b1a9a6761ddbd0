//! `landfall produce` settings.

use std::time::Duration;

use super::{
    env_first, http_addr, kafka_settings, ConfigError, Problems, MAX_OUT_OF_ORDER_SECS,
    MAX_PARTITIONS, MAX_TXN_MS, MAX_TXN_SIZE,
};
use crate::cli::{ClockArg, ProduceArgs};
use crate::produce::generator::GeneratorConfig;
use crate::produce::producer::{Clock, ProduceConfig};

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

    let count = count(args, &mut p);
    if !(args.rate.is_finite() && (0.0..=10_000_000.0).contains(&args.rate)) {
        p.push(
            "--rate",
            "LANDFALL_RATE",
            args.rate,
            "must be zero (as fast as possible) or up to 10000000 records per second",
        );
    }
    let clock = clock(args, &mut p);
    let generator = generator(args, &mut p);
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
    let topic = topic_spec(args, &mut p);
    let progress_secs = p.range(
        "--progress-interval-secs",
        "LANDFALL_PROGRESS_INTERVAL_SECS",
        args.progress_interval_secs,
        1,
        86_400,
        "seconds",
    );
    let (transaction_timeout, txn_max) = transactions(args, &mut p);
    let cfg = ProduceConfig {
        kafka,
        count,
        rate: args.rate,
        clock,
        generator,
        txn_size: txn_size as usize,
        txn_max,
        abort_fraction,
        transactional_id: args.transactional_id.clone(),
        transaction_timeout,
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

/// `--count` (or `LANDFALL_COUNT` / `RECORDS_LIMIT`): how many records, 0 for no end.
fn count(args: &ProduceArgs, p: &mut Problems) -> u64 {
    match args.count {
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
    }
}

/// `--clock`: event times from the wall clock, or simulated from `--sim-start`.
fn clock(args: &ProduceArgs, p: &mut Problems) -> Clock {
    match args.clock {
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
    }
}

/// What the generator makes: its seed, disorder and the fractions of late, invalid and
/// unknown-campaign records.
fn generator(args: &ProduceArgs, p: &mut Problems) -> GeneratorConfig {
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
    let out_of_order_secs = p.range(
        "--out-of-order-secs",
        "LANDFALL_OUT_OF_ORDER_SECS",
        args.out_of_order_secs,
        0,
        MAX_OUT_OF_ORDER_SECS,
        "seconds",
    );
    GeneratorConfig {
        seed: args.seed.unwrap_or_else(rand::random),
        out_of_order_secs,
        late_fraction,
        invalid_fraction,
        unknown_campaign_fraction,
        ..GeneratorConfig::default()
    }
}

/// `--create-topic`, with `--partitions` and `--replication-factor`.
fn topic_spec(args: &ProduceArgs, p: &mut Problems) -> Option<TopicSpec> {
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
    args.create_topic.then_some(TopicSpec {
        partitions,
        replication,
    })
}

/// `--transactional-id`, `--transaction-timeout-ms` and `--txn-max-ms`: the transaction
/// timeout and how long one transaction may stay open.
fn transactions(args: &ProduceArgs, p: &mut Problems) -> (Duration, Duration) {
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
    (
        Duration::from_millis(transaction_timeout_ms),
        Duration::from_millis(txn_max_ms),
    )
}
