//! `landfall consume` settings.

use std::time::Duration;

use super::*;
use crate::cli::ConsumeArgs;
use crate::consume::pipeline::ConsumeConfig;
use crate::consume::start::StartFrom;
use crate::consume::window::WindowConfig;
use crate::store::Root;

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
    check_group_campaigns(args, &mut p);
    let (output, rejects) = outputs(args, &mut p);
    let cfg = ConsumeConfig {
        kafka,
        group: args.group.clone(),
        instance_id: args.instance_id.clone().filter(|s| !s.trim().is_empty()),
        assignment_strategy: args.assignment_strategy.into(),
        start_from: start_from(&args.start_from, &mut p),
        campaigns: args.campaigns.clone(),
        output,
        rejects,
        assume_single_writer: args.assume_single_writer,
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
        fsync: args.fsync.into(),
        unsafe_no_durability: args.unsafe_no_durability,
        http_addr: http_addr(&args.http_addr, &mut p),
    };
    p.finish(cfg)
}

fn check_group_campaigns(args: &ConsumeArgs, p: &mut Problems) {
    if args.group.trim().is_empty() {
        p.push("--group", "LANDFALL_GROUP", "\"\"", "must not be empty");
    }
    check_campaigns(&args.campaigns, p);
}

/// `--campaigns`: a readable campaign table with at least one campaign.
fn check_campaigns(path: &std::path::Path, p: &mut Problems) {
    if path.is_dir() {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            path.display(),
            "is a directory; give the campaign table's CSV file",
        );
    } else if !path.is_file() {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            path.display(),
            "no such file",
        );
    } else if let Err(e) = crate::consume::enrich::CampaignTable::load(path) {
        p.push(
            "--campaigns",
            "LANDFALL_CAMPAIGNS",
            path.display(),
            &e.to_string(),
        );
    }
}

/// `--output-dir` and `--rejects-dir`, local or in an object store, checked with
/// `--state-dir`.
fn outputs(args: &ConsumeArgs, p: &mut Problems) -> (Root, Root) {
    let timeout = super::store::store_timeout(&args.store, p);
    let output = super::store::root(
        "--output-dir",
        "LANDFALL_OUTPUT_DIR",
        &args.output_dir,
        timeout,
        p,
    );
    let rejects = super::store::root(
        "--rejects-dir",
        "LANDFALL_REJECTS_DIR",
        &args.rejects_dir,
        timeout,
        p,
    );
    check_dirs(&output, &rejects, &args.state_dir, p);
    (output, rejects)
}

/// The output, rejects and state directories must not nest: report globs would match rejects.
/// The state store (sled) is always local.
fn check_dirs(output: &Root, rejects: &Root, state: &std::path::Path, p: &mut Problems) {
    if output.overlaps(rejects) {
        p.push("--rejects-dir", "LANDFALL_REJECTS_DIR", rejects, "must be outside --output-dir (and not contain it), so report globs never match rejects");
    }
    let state_dir = Root::Local(state.to_path_buf());
    if !matches!(
        Root::parse(state, crate::store::DEFAULT_STORE_TIMEOUT),
        Ok(Root::Local(_))
    ) {
        p.push(
            "--state-dir",
            "LANDFALL_STATE_DIR",
            state.display(),
            "must be a local directory (the state store is embedded; only the output may be in an object store)",
        );
    } else if output.overlaps(&state_dir) {
        p.push(
            "--state-dir",
            "LANDFALL_STATE_DIR",
            state.display(),
            "must be outside --output-dir",
        );
    }
}

/// `--start-from`: earliest, latest, or a time; a relative time counts back from now.
fn start_from(value: &str, p: &mut Problems) -> StartFrom {
    match value.trim() {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        v => {
            let now_us = chrono::Utc::now().timestamp_micros();
            match crate::query::parse_time(v, now_us) {
                Ok(us) => StartFrom::Time(us.div_euclid(1000)),
                Err(why) => {
                    p.push(
                        "--start-from",
                        "LANDFALL_START_FROM",
                        format!("{v:?}"),
                        &format!("expected earliest, latest or a time: {why}"),
                    );
                    StartFrom::Earliest
                }
            }
        }
    }
}
