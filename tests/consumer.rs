//! `landfall consume` against the real local Kafka broker: a golden run checked against an
//! independent reference and by `landfall verify`, a graceful stop, and external readers.
//! Crashes and other faults are in `recovery.rs` and `faults.rs`.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::harness::*;
use support::output::*;
use support::*;

fn assert_matches_reference(topic: &str, d: &Dirs) -> Reference {
    let committed = read_topic(topic, "read_committed");
    let want = reference(&committed, WINDOW_MS, LATENESS_MS, SKEW_MS);
    let windows = read_windows(&d.report);
    let rejects = read_rejects(&d.rejects);
    assert_eq!(
        windows, want.windows,
        "window contents differ from the reference"
    );
    assert_eq!(
        reject_classes(&rejects),
        want.rejects,
        "rejects differ from the reference"
    );
    // Every committed record exactly once: counted in a window, or in the rejects.
    let counted: i64 = windows.values().flat_map(|c| c.values()).map(|c| c.0).sum();
    assert_eq!(counted as usize + rejects.len(), committed.len());
    want
}

#[test]
fn golden_run_matches_an_independent_reference() {
    let topic = unique_topic("golden");
    produce_golden(&topic, 100_000);
    let d = dirs();
    consume_to_end(&topic, &format!("{topic}-g"), &d);

    // Aborted records appear nowhere: the records a read_uncommitted reader sees and a
    // read_committed one does not are in no reject file, and the windows are those of the
    // committed records, not those of every record.
    let committed = read_topic(&topic, "read_committed");
    let uncommitted = read_topic(&topic, "read_uncommitted");
    let committed_at: std::collections::BTreeSet<(i32, i64)> =
        committed.iter().map(|r| (r.partition, r.offset)).collect();
    let aborted: Vec<(i32, i64)> = uncommitted
        .iter()
        .map(|r| (r.partition, r.offset))
        .filter(|k| !committed_at.contains(k))
        .collect();
    assert!(
        aborted.len() >= 10_000,
        "the topic has aborted records to skip: {} of {}",
        aborted.len(),
        uncommitted.len()
    );
    let rejects = read_rejects(&d.rejects);
    let rejected_aborted: Vec<&(i32, i64)> =
        aborted.iter().filter(|k| rejects.contains_key(k)).collect();
    assert!(
        rejected_aborted.is_empty(),
        "{} aborted records are in the rejects, the first (partition, offset): {:?}",
        rejected_aborted.len(),
        &rejected_aborted[..rejected_aborted.len().min(5)]
    );
    let windows = read_windows(&d.report);
    let total = |w: &std::collections::BTreeMap<i32, Cells>| -> i64 {
        w.values().flat_map(|c| c.values()).map(|c| c.0).sum()
    };
    let everything = reference(&uncommitted, WINDOW_MS, LATENESS_MS, SKEW_MS);
    assert!(
        windows != everything.windows && total(&windows) < total(&everything.windows),
        "the windows count aborted records: {} counted, {} in the windows of every record",
        total(&windows),
        total(&everything.windows)
    );
    let want = assert_matches_reference(&topic, &d);
    assert_eq!(total(&windows), total(&want.windows));
    assert!(want.records >= 75_000, "{} committed records", want.records);

    // Every reason the generator can produce appears, at the right offsets.
    let reasons: std::collections::BTreeSet<&str> = rejects.values().map(String::as_str).collect();
    for r in [
        "late",
        "malformed_json",
        "missing_field",
        "wrong_type",
        "end_before_start",
        "too_far_in_future",
    ] {
        assert!(
            reasons.contains(r),
            "no reject with reason {r}: {reasons:?}"
        );
    }

    // No temporary file is matched by a **/*.parquet glob, and nothing is left behind: every
    // file in either tree is a finished Parquet file with a final name.
    assert_only_final_files(&d.report);
    assert_only_final_files(&d.rejects);

    // External readers: duckdb and pyarrow with hive partitioning.
    let counted: i64 = read_windows(&d.report)
        .values()
        .flat_map(|c| c.values())
        .map(|c| c.0)
        .sum();
    check_external_readers(&d.report, counted);

    // The audit agrees, with and without the group's committed offsets.
    let mut ledger = Ledger::new("golden_run");
    assert_verified(&topic, Some(&format!("{topic}-g")), &d, &mut ledger);
    let v = assert_verified(&topic, None, &d, &mut ledger);
    assert_eq!(v.int("counted") as i64, counted);
    assert_eq!(v.int("records") as usize, want.records);
    ledger.book();
}

/// The consumer takes the assigned partitions' records from a queue they are routed to
/// (`consume/fetch.rs`). When a routing does not hold (librdkafka's stop of an earlier fetch
/// can undo it, a race), that partition's records come through the consumer's own queue, and
/// must be taken from there alike: here the first partition routed is routed nowhere (a
/// failpoint), and the output must match the reference and pass `verify`.
#[test]
fn a_partition_whose_records_come_through_the_consumer_queue_lands_the_same() {
    let topic = unique_topic("unrouted");
    produce_golden(&topic, 30_000);
    let d = dirs();
    let group = format!("{topic}-g");
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    cmd.env("LANDFALL_FAILPOINT", "fetch-route:1")
        .env("LANDFALL_LOG", "info");
    let log = log_stderr(&mut cmd, d.tmp.path(), "consume");
    let mut child = cmd.spawn().expect("spawn landfall consume");
    let status = wait_exit(&mut child, Duration::from_secs(180), "landfall consume");
    assert!(status.success(), "consume failed: {}", log_tail(&log, 30));
    let said = strip_ansi(&read_log(&log));
    assert!(
        said.contains("records come through the consumer's queue"),
        "no partition's records came through the consumer's queue: {}",
        log_tail(&log, 30)
    );
    assert_matches_reference(&topic, &d);
    let mut ledger = Ledger::new("unrouted_partition");
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

fn check_external_readers(report: &Path, total: i64) {
    let python = std::env::var("LANDFALL_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("tests/readers.py"))
        .arg(report)
        .arg(total.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    assert!(
        out.status.success(),
        "external readers failed (scripts/test installs duckdb and pyarrow; set LANDFALL_PYTHON):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_continues() {
    let topic = unique_topic("sigterm");
    produce_golden(&topic, 60_000);
    let d = dirs();
    let group = format!("{topic}-g");
    // No --exit-on-idle: it runs until told to stop.
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(cmd);
    wait_until("a window to land", Duration::from_secs(60), || {
        !parquet_files(&d.report).is_empty()
    });
    let pid = child.child().id() as i32;
    let t0 = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = loop {
        if let Some(s) = child.child().try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "no exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    child.0 = None;
    consume_to_end(&topic, &group, &d);
    assert_matches_reference(&topic, &d);
}
