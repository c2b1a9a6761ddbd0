//! `landfall verify` settings.

use std::time::Duration;

use super::*;
use crate::cli::VerifyArgs;
use crate::consume::decode::Limits;
use crate::consume::window::WindowConfig;
use crate::identity::Settings;
use crate::verify::VerifyConfig;

/// Validates `landfall verify` settings. Window settings left out come from the group's commit
/// metadata (`group_signature`), else the consumer's defaults; given ones must agree with it.
pub fn verify_config(
    args: &VerifyArgs,
    group_signature: Option<&str>,
) -> Result<VerifyConfig, ConfigError> {
    let mut p = Problems::default();
    let kafka = kafka_settings(&args.kafka, &mut p);
    let group = group_signature.and_then(Settings::parse);
    let size_ms = pick(
        &mut p,
        "--window-secs",
        args.window_secs,
        group.map(|g| g.window.size_ms),
        (60, 1, MAX_WINDOW_SECS),
    );
    let lateness_ms = pick(
        &mut p,
        "--allowed-lateness-secs",
        args.allowed_lateness_secs,
        group.map(|g| g.window.lateness_ms),
        (60, 0, MAX_LATENESS_SECS),
    );
    let skew_ms = pick(
        &mut p,
        "--max-future-skew-secs",
        args.max_future_skew_secs,
        group.map(|g| g.max_future_skew_ms),
        (300, 0, MAX_FUTURE_SKEW_SECS),
    );
    let duration_ms = pick(
        &mut p,
        "--max-duration-secs",
        args.max_duration_secs,
        group.and_then(|g| g.max_duration_ms),
        (DEFAULT_MAX_DURATION_SECS, 1, MAX_DURATION_SECS),
    );
    let timeout_secs = p.range(
        "--timeout-secs",
        "-",
        args.timeout_secs,
        1,
        86_400,
        "seconds",
    );
    let until = until(args.until.as_deref(), &mut p);
    let store_timeout = super::store::store_timeout(&args.store, &mut p);
    let report = super::store::root(
        "--output-dir",
        "LANDFALL_OUTPUT_DIR",
        &args.output_dir,
        store_timeout,
        &mut p,
    );
    let rejects = super::store::root(
        "--rejects-dir",
        "LANDFALL_REJECTS_DIR",
        &args.rejects_dir,
        store_timeout,
        &mut p,
    );
    if args.group.as_deref().is_some_and(|g| g.trim().is_empty()) {
        p.push("--group", "LANDFALL_GROUP", "\"\"", "must not be empty");
    }
    let cfg = VerifyConfig {
        kafka,
        report,
        rejects,
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

/// `--until p:offset,...`: where the audit stops reading each partition.
fn until(spec: Option<&str>, p: &mut Problems) -> std::collections::BTreeMap<i32, i64> {
    let mut until = std::collections::BTreeMap::new();
    if let Some(spec) = spec {
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
    until
}

/// A window setting for the audit, in milliseconds: the flag if given (in range, and agreeing
/// with the group's), else the group's, else the consumer's default. `(default, lo, hi)` are
/// in seconds.
fn pick(
    p: &mut Problems,
    flag: &str,
    given: Option<i64>,
    group: Option<i64>,
    (default, lo, hi): (i64, i64, i64),
) -> i64 {
    let given = given.map(|g| p.range(flag, "-", g, lo, hi, "seconds") * 1000);
    match (given, group) {
        (Some(g), Some(c)) if g != c => {
            let why = format!(
                "the group committed with {} s; the audit must use the consumer's settings",
                c / 1000
            );
            p.push(flag, "-", g / 1000, &why);
            g
        }
        (Some(g), _) => g,
        (None, Some(c)) => c,
        (None, None) => default * 1000,
    }
}
