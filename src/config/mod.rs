//! Validation: raw command-line settings become typed configurations. Every problem is reported
//! at once, each naming the setting and the bad value.

use std::fmt;

use crate::cli::{ServeArgs, WindowsArgs};
use crate::query::Query;

mod consume;
mod kafka;
mod produce;
mod store;
mod verify;

pub use consume::consume_config;
pub use kafka::kafka_only;
use kafka::{env_first, kafka_settings};
pub use produce::{produce_config, TopicSpec};
pub use store::report_root;
pub use verify::verify_config;

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

/// Every problem the checks above find in `command`'s settings, without acting on them: added
/// to the values the command line rejected (`cli::lenient`), so that all are reported at once.
pub fn problems_of(command: &crate::cli::Command) -> Vec<String> {
    use crate::cli::{BenchCommand, Command};
    fn problems<T>(r: Result<T, ConfigError>) -> Vec<String> {
        r.err().map(|e| e.problems).unwrap_or_default()
    }
    let now_us = chrono::Utc::now().timestamp_micros();
    match command {
        Command::Produce(a) => problems(produce_config(a)),
        Command::Consume(a) => problems(consume_config(a)),
        Command::Windows(a) => [
            problems(windows_query(a, now_us)),
            problems(report_root(&a.output_dir, &a.store)),
        ]
        .concat(),
        Command::Serve(a) => [
            problems(serve_addr(a)),
            problems(report_root(&a.output_dir, &a.store)),
        ]
        .concat(),
        Command::Peek(a) => problems(kafka_only(&a.kafka)),
        Command::Verify(a) => problems(verify_config(a, None)),
        Command::Bench(BenchCommand::All(a)) => problems(kafka_only(&a.common.kafka)),
        Command::Bench(BenchCommand::Consume(a)) => problems(kafka_only(&a.common.kafka)),
        Command::Bench(BenchCommand::Scale(a)) => problems(kafka_only(&a.common.kafka)),
        Command::Bench(BenchCommand::Produce(a)) => problems(kafka_only(&a.common.kafka)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{ConsumeArgs, VerifyArgs};
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
