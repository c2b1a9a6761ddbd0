//! `--start-from`: where a group with no committed offsets starts. A time starts each
//! partition where an independent client's `offsets_for_times` says; the start is committed
//! before anything lands, so a crash right after it, or a restart with another
//! `--start-from`, continues from it; `verify` reads the start from the commits.
//!
//! Needs the `failpoints` feature (`scripts/test` enables it) and the Python with
//! confluent-kafka that `scripts/test` installs.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::harness::*;
use support::output::tree_bytes;
use support::*;

/// Golden records cover 150 simulated seconds; the group starts one minute in.
const START_AFTER_SECS: i64 = 60;

fn start_time() -> (String, i64) {
    let ms = SIM_START_MS + START_AFTER_SECS * 1000;
    let text = chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339();
    (text, ms)
}

fn consume_from(topic: &str, group: &str, d: &Dirs, from: &str) -> Command {
    let mut cmd = consume_cmd(topic, group, d, true);
    cmd.args(["--start-from", from])
        .env("LANDFALL_LOG", "warn,landfall::consume::source=info");
    cmd
}

/// `offsets_for_times` by confluent-kafka (its own librdkafka), with a property file that
/// names only the plaintext broker.
fn offsets_for_times(topic: &str, ms: i64) -> BTreeMap<i32, i64> {
    let dir = scratch();
    let file = dir.path().join("plain.properties");
    std::fs::write(&file, format!("bootstrap.servers={}\n", brokers())).unwrap();
    let found = kafka_probe(&file, &["offsets-for-times", topic, &ms.to_string()]);
    let map: BTreeMap<String, i64> = serde_json::from_value(found).unwrap();
    map.into_iter()
        .map(|(p, o)| (p.parse().unwrap(), o))
        .collect()
}

/// The start each partition's commit records (`from=` in its metadata).
fn committed_starts(topic: &str, group: &str) -> BTreeMap<i32, i64> {
    landfall::ops::kafka::committed_offsets(&settings(topic), group)
        .unwrap()
        .into_iter()
        .map(|(p, c)| {
            let (_, meta) = c.unwrap_or_else(|| panic!("partition {p} has no commit"));
            let parsed = landfall::consume::commit::CommitPoint::parse_metadata(&meta).unwrap();
            let start = parsed.progress.start_offset;
            (p, start.unwrap_or_else(|| panic!("no start in {meta:?}")))
        })
        .collect()
}

#[test]
fn a_time_starts_where_offsets_for_times_says_and_a_restart_keeps_it() {
    let mut ledger = Ledger::new("start_from");
    let topic = unique_topic("start-from");
    produce_golden(&topic, 3_000);
    let (from, ms) = start_time();
    let want = offsets_for_times(&topic, ms);
    assert!(
        want.values().all(|o| *o > 0),
        "the start should be past the beginning: {want:?}"
    );

    let d = dirs();
    let out = run_ok(consume_from(&topic, "sf", &d, &from));
    let said = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("committed before reading"), "{said}");
    assert_eq!(committed_starts(&topic, "sf"), want);

    let v = assert_verified(&topic, Some("sf"), &d, &mut ledger);
    let before = v.int("before_start");
    assert!(
        before > 0,
        "verify saw nothing before the start: {}",
        v.report
    );
    assert_eq!(
        v.int("counted") + v.int("rejected") + before,
        v.int("records"),
        "{}",
        v.report
    );

    // A restart with another --start-from keeps the group's start and changes nothing.
    let landed = tree_bytes(&d.report);
    let out = run_ok(consume_from(&topic, "sf", &d, "latest"));
    let said = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(said.contains("--start-from does not apply"), "{said}");
    assert_eq!(tree_bytes(&d.report), landed);
    assert_eq!(committed_starts(&topic, "sf"), want);
    ledger.book();
}

/// A kill right after the start was committed, then a restart with `--start-from latest`:
/// the group continues from the committed start, and lands what an uninterrupted run from
/// that time lands.
#[test]
fn a_crash_after_the_start_commit_resumes_from_it() {
    let mut ledger = Ledger::new("start_from_crash");
    let topic = unique_topic("start-from-crash");
    produce_golden(&topic, 3_000);
    let (from, _) = start_time();

    let clean = dirs();
    run_ok(consume_from(&topic, "clean", &clean, &from));

    let d = dirs();
    let mut cmd = consume_from(&topic, "crash", &d, &from);
    cmd.env("LANDFALL_FAILPOINT", "after-start-commit:1");
    let log = log_stderr(&mut cmd, d.tmp.path(), "crash");
    let mut child = ChildGuard::spawn(cmd);
    let status = wait_exit(child.child(), Duration::from_secs(60), "after-start-commit");
    child.0 = None;
    assert_eq!(
        killed_by(status),
        Some(libc::SIGABRT),
        "did not die at after-start-commit ({status}); built with --features failpoints?\n{}",
        read_log(&log)
    );
    ledger.faults += 1;
    ledger.kills += 1;
    assert!(
        support::output::parquet_files(&d.report).is_empty(),
        "landed before the start was committed"
    );

    run_ok(consume_from(&topic, "crash", &d, "latest"));
    ledger.restarts += 1;
    assert_same_output(&clean, &d);
    assert_eq!(
        committed_starts(&topic, "crash"),
        committed_starts(&topic, "clean")
    );
    assert_verified(&topic, Some("crash"), &d, &mut ledger);
    ledger.book();
}
