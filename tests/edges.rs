//! Edges, against the real broker and the real binary: defects that each once broke a run in
//! a way no golden run shows. Settings past their range and campaign tables without rows (or
//! that are directories) are refused by name before anything starts; `--exit-on-idle` exits
//! when some partition never hands the consumer a record (empty, only an aborted transaction,
//! or consumed to its end by an earlier run); foreign, truncated, empty and Snappy-compressed
//! files in the report neither crash nor fool `landfall windows`, `verify` or `serve`; a full
//! disk under the state store is an I/O error, not a corrupt store to move aside; partitions
//! added to a running topic are read within seconds; and `/windows` refuses a signed relative
//! time and a repeated parameter. Hostile values in records (year 1, year -200000, a view
//! longer than a day) are in the catalogue of `bad_input.rs`.
//!
//! Every test that consumes books its run in the fault ledger, with `landfall verify` as the
//! judge. The state-disk test mounts a tmpfs, so it needs root (or CAP_SYS_ADMIN).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewPartitions};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use support::harness::*;
use support::output::*;
use support::*;

/// How long a consumer with `--exit-on-idle` may take to exit by itself on a small topic.
/// The runs here take a few seconds; a consumer still running after this has hung.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// Nothing listens here: a refusal that comes before the broker is contacted is instant,
/// and one that comes after would first spend the connect timeout on it.
const UNREACHABLE: &str = "127.0.0.1:1";

/// Runs a command for at most `within` and returns its exit code and its log (stderr, without
/// colours). A command still running then is killed and the test fails: it hung.
fn run_within(mut cmd: Command, dir: &Path, name: &str, within: Duration) -> (Option<i32>, String) {
    let log = log_stderr(&mut cmd, dir, name);
    let mut child = ChildGuard::spawn(cmd);
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(s) = child.child().try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            child.kill9();
            panic!(
                "{name} hung: still running after {within:?}, killed; its log:\n{}",
                strip_ansi(&read_log(&log))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    child.0 = None;
    (status.code(), strip_ansi(&read_log(&log)))
}

/// `landfall consume --exit-on-idle` for `group`, which must exit 0 by itself.
fn consume_until_it_exits(topic: &str, group: &str, d: &Dirs, name: &str) -> String {
    let cmd = consume_cmd(topic, group, d, true);
    let t0 = Instant::now();
    let (code, log) = run_within(cmd, d.tmp.path(), name, EXIT_WITHIN);
    assert_eq!(code, Some(0), "{name} failed:\n{log}");
    eprintln!("{name} exited by itself after {:?}", t0.elapsed());
    log
}

/// A view event in the original producer's JSON: view `i`, ending at `end_ms`, lasting 1 to
/// 100 s, on one of the campaign table's campaigns.
fn view(i: usize, end_ms: i64) -> String {
    const CAMPAIGNS: [i64; 14] = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140];
    let lasts_ms = 1_000 + (i as i64 * 7_919) % 99_000;
    let ts = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S%.3f")
            .to_string()
    };
    format!(
        r#"{{"viewId":"v{i}","startTimestamp":"{}","endTimestamp":"{}","bannerId":{},"campaignId":{}}}"#,
        ts(end_ms - lasts_ms),
        ts(end_ms),
        1 + i % 1000,
        CAMPAIGNS[i % CAMPAIGNS.len()]
    )
}

/// `n` views in event-time order, one every `every_ms`, the first ending at `from_ms`.
fn views(n: usize, from_ms: i64, every_ms: i64) -> Vec<String> {
    (0..n)
        .map(|i| view(i, from_ms + i as i64 * every_ms))
        .collect()
}

fn producer(extra: &[(&str, &str)]) -> ThreadedProducer<DefaultProducerContext> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Sends `values` to one partition, keyed by their position.
fn send(
    p: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    partition: i32,
    values: &[String],
) {
    for (i, v) in values.iter().enumerate() {
        let key = format!("k{i}");
        let r = BaseRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(v);
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Writes `values` to one partition, not in a transaction, and waits until they are written.
fn produce_plain(topic: &str, partition: i32, values: &[String]) {
    send(&producer(&[]), topic, partition, values);
}

/// The output is exactly what the independent reference computes from the records a
/// read_committed reader sees: the same cells per partition, the same rejects. Returns the
/// number of committed records.
fn assert_matches_reference(topic: &str, d: &Dirs) -> usize {
    let committed = read_topic(topic, "read_committed");
    let want = reference(&committed, WINDOW_MS, LATENESS_MS, SKEW_MS);
    assert_eq!(
        read_windows(&d.report),
        want.windows,
        "window contents differ from the reference"
    );
    assert_eq!(
        reject_classes(&read_rejects(&d.rejects)),
        want.rejects,
        "rejects differ from the reference"
    );
    committed.len()
}

/// The partitions that landed window files.
fn partitions_with_windows(d: &Dirs) -> Vec<i32> {
    read_windows(&d.report).into_keys().collect()
}

/// Settings whose range check is all that stands between them and an overflow when they are
/// turned into milliseconds: `--window-secs` and `--allowed-lateness-secs` at i64::MAX. Each
/// is a usage error (exit 2) naming the flag, its variable and the range, before the broker is
/// contacted and before any directory is created. (Before: the consumer created its
/// directories and went on to contact the broker with them.)
#[test]
fn settings_past_their_range_are_refused_by_name_before_anything_starts() {
    for (flag, var, range) in [
        (
            "--window-secs",
            "LANDFALL_WINDOW_SECS",
            "between 1 and 86400",
        ),
        (
            "--allowed-lateness-secs",
            "LANDFALL_ALLOWED_LATENESS_SECS",
            "between 0 and 604800",
        ),
    ] {
        let d = dirs();
        let mut cmd = consume_cmd("edges-never-created", "edges", &d, true);
        cmd.args([flag, "9223372036854775807"])
            .env("LANDFALL_BROKERS", UNREACHABLE)
            .env("LANDFALL_CONNECT_TIMEOUT_SECS", "5");
        let (code, said) = run_within(cmd, d.tmp.path(), "consume", Duration::from_secs(60));
        assert_eq!(
            code,
            Some(2),
            "{flag} at i64::MAX is not a usage error:\n{said}"
        );
        for s in [&format!("{flag} ({var}) = 9223372036854775807"), range] {
            assert!(said.contains(s), "the refusal does not say {s:?}:\n{said}");
        }
        for dir in [&d.report, &d.rejects, &d.state] {
            assert!(!dir.exists(), "{} was created", dir.display());
        }
    }
}

/// A campaign table with a header and no rows would make every campaign unknown, and a
/// directory is not a table. Each is a usage error (exit 2) that names `--campaigns` and the
/// path, before anything starts. (Before: the header-only table loaded "0 campaigns" and the
/// run went on; the directory was reported as "no such file".)
#[test]
fn a_campaign_table_without_rows_or_that_is_a_directory_is_refused_by_name() {
    let d = dirs();
    let header_only = d.tmp.path().join("header-only.csv");
    std::fs::write(&header_only, "network_id,campaign_id,campaign_name\n").unwrap();
    let directory = d.tmp.path().join("campaigns_dict");
    std::fs::create_dir(&directory).unwrap();
    for (table, says) in [
        (&header_only, "has a header but no campaigns"),
        (&directory, "is a directory"),
    ] {
        let mut cmd = consume_cmd("edges-never-created", "edges", &d, true);
        cmd.env("LANDFALL_CAMPAIGNS", table)
            .env("LANDFALL_BROKERS", UNREACHABLE)
            .env("LANDFALL_CONNECT_TIMEOUT_SECS", "5");
        let (code, said) = run_within(cmd, d.tmp.path(), "consume", Duration::from_secs(60));
        assert_eq!(code, Some(2), "{} is not refused:\n{said}", table.display());
        let named = format!("--campaigns (LANDFALL_CAMPAIGNS) = {}", table.display());
        for s in [named.as_str(), says] {
            assert!(said.contains(s), "the refusal does not say {s:?}:\n{said}");
        }
        assert!(!d.report.exists(), "the report directory was created");
    }
}

/// `--exit-on-idle` on a topic of three partitions from two of which no record ever reaches
/// the consumer: partition 0 has committed records, partition 1 only an aborted transaction
/// (a read_committed reader sees none of it) and partition 2 nothing at all. Neither of the
/// two gets a position from a record, so each must count as caught up at its end. (Before:
/// the consumer waited for the empty partition forever. The aborted one alone did not hang
/// it: librdkafka 2.12 moves the position past aborted records and their marker; it is here
/// because the end-of-partition logic that replaced the position check must cover it too.)
#[test]
fn exit_on_idle_exits_when_partitions_hand_the_consumer_no_record() {
    let mut ledger = Ledger::new("edge_idle_no_records");
    let topic = unique_topic("no-records");
    create_topic(&topic, 3);
    let p = producer(&[("transactional.id", topic.as_str())]);
    p.init_transactions(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    // Five minutes of event time, a view every 100 ms.
    send(&p, &topic, 0, &views(3_000, SIM_START_MS, 100));
    p.commit_transaction(Duration::from_secs(30)).unwrap();
    p.begin_transaction().unwrap();
    send(&p, &topic, 1, &views(1_000, SIM_START_MS, 300));
    p.abort_transaction(Duration::from_secs(30)).unwrap();
    drop(p);
    ledger.faults = 2;
    // The case is real: partition 1 has records, none of them committed.
    let uncommitted = read_topic(&topic, "read_uncommitted");
    assert_eq!(
        uncommitted.iter().filter(|r| r.partition == 1).count(),
        1_000
    );
    let committed = read_topic(&topic, "read_committed");
    assert!(committed.iter().all(|r| r.partition == 0));

    let d = dirs();
    let group = format!("{topic}-g");
    consume_until_it_exits(&topic, &group, &d, "consumer");
    assert_eq!(assert_matches_reference(&topic, &d), 3_000);
    assert_eq!(partitions_with_windows(&d), [0]);
    assert!(read_rejects(&d.rejects).is_empty());
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// A group that has consumed a topic (written without transactions, so its log ends right
/// after the last record) to its end runs again with `--exit-on-idle`: its committed offsets
/// are the ends, no record reaches it, and it must exit by itself having landed nothing new.
/// (Before: the second run waited forever.)
#[test]
fn exit_on_idle_exits_when_the_group_has_already_read_everything() {
    let mut ledger = Ledger::new("edge_idle_consumed");
    let topic = unique_topic("consumed");
    create_topic(&topic, 2);
    produce_plain(&topic, 0, &views(1_500, SIM_START_MS, 200));
    produce_plain(&topic, 1, &views(1_500, SIM_START_MS + 50, 200));
    let d = dirs();
    let group = format!("{topic}-g");
    consume_until_it_exits(&topic, &group, &d, "first run");
    assert_eq!(assert_matches_reference(&topic, &d), 3_000);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    let (windows, rejects) = (tree_bytes(&d.report), tree_bytes(&d.rejects));
    assert!(!windows.is_empty());

    ledger.restarts += 1;
    ledger.faults += 1;
    consume_until_it_exits(&topic, &group, &d, "second run");
    assert_eq!(tree_bytes(&d.report), windows, "the window files changed");
    assert_eq!(tree_bytes(&d.rejects), rejects, "the reject files changed");
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// `landfall windows` on `report` with `args`; it does not need the broker.
fn windows(report: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = landfall_windows(report, args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    )
}

/// The `--explain` line's counts: `scan: dirs_scanned=3 ... files_unreadable=2 ...`.
fn scan_counts(stderr: &str) -> std::collections::BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("scan: "))
        .unwrap_or_else(|| panic!("no scan line in {stderr}"));
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().expect("a count")))
        .collect()
}

/// Runs a Python script with pyarrow, failing the test with its output.
fn run_python(script: &str, args: &[&Path]) {
    let py = python();
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", py.display()));
    assert!(
        out.status.success(),
        "{} failed (scripts/test installs pyarrow; set LANDFALL_PYTHON):\n{}{}",
        py.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes, with pyarrow, a file with the window file's column names but `window_start` and
/// `window_end` as strings, zstd-compressed like Landfall's own (so that a reader gets as far
/// as the columns); with a second argument, its footer also claims `landfall.kind = window`.
const FOREIGN_FILE: &str = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
t = pa.table({
    "window_start": ["2024-09-13 06:50:00"], "window_end": ["2024-09-13 06:51:00"],
    "network_id": [1], "campaign_id": [10], "campaign_name": ["Campaign 10"],
    "total_count": [1], "avg_duration": [1.5], "sum_duration": [1.5],
    "min_duration": [1.5], "max_duration": [1.5],
})
if len(sys.argv) > 2:
    t = t.replace_schema_metadata({"landfall.kind": "window"})
pq.write_table(t, sys.argv[1], compression="zstd")
"#;

/// Rewrites a window file with pyarrow, Snappy-compressed (pyarrow's default), keeping its
/// footer's key-value entries (pyarrow does not carry them over by itself: they are copied),
/// and checks that it did.
const SNAPPY_REWRITE: &str = r#"
import sys, pyarrow.parquet as pq
path = sys.argv[1]
kv = {k: v for k, v in pq.ParquetFile(path).metadata.metadata.items()
      if not k.startswith(b"ARROW:")}
t = pq.read_table(path).replace_schema_metadata(kv)
pq.write_table(t, path + ".snappy", compression="snappy")
f = pq.ParquetFile(path + ".snappy")
assert f.metadata.row_group(0).column(0).compression == "SNAPPY"
assert all(f.metadata.metadata[k] == v for k, v in kv.items()), "footer not kept"
"#;

/// After a normal run, four files that are not landed window files are put in the report
/// tree under `.parquet` names: a pyarrow file with the right column names but a string
/// `window_start` (and a copy of it whose footer claims to be a Landfall window file), a
/// truncated copy of a landed file, and a zero-byte file; and one landed file is replaced by
/// a Snappy-compressed rewrite of itself, footer kept.
///
/// - `landfall windows` answers exactly as before, never panics, names each unreadable file
///   in a warning, and skips the foreign file by its footer (docs/querying.md: only files
///   whose footer says `landfall.kind = window` count); the Snappy file is read as before.
/// - `landfall verify` exits 1 with one `unreadable_file` per bad file, each named, and
///   nothing about the Snappy file or anything else.
/// - `landfall serve` answers `GET /windows` with 200 and the same rows.
///
/// (Before: `windows` and `verify` panicked in arrow's cast on the string column, and `serve`
/// answered 500 with the panic's message; the truncated and the empty file each ended
/// `windows` and `verify` with an error; and a Snappy file could not be read at all, the
/// codec not being compiled in.)
#[test]
fn foreign_truncated_empty_and_snappy_files_in_the_report_are_named_not_fatal() {
    let mut ledger = Ledger::new("edge_foreign_files");
    let topic = unique_topic("foreign");
    produce_golden(&topic, 6_000);
    let d = dirs();
    let group = format!("{topic}-g");
    consume_to_end(&topic, &group, &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    let (code, before, said) = windows(&d.report, &["--format", "json"]);
    assert_eq!(code, Some(0), "{said}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&before).unwrap();
    assert!(rows.len() > 50, "{} rows", rows.len());

    let landed = parquet_files(&d.report);
    let dir = d.report.join(landed[0].parent().unwrap());
    let foreign = dir.join("foreign-export.parquet");
    let claims = dir.join("claims-to-be-a-window.parquet");
    let truncated = dir.join("truncated-copy.parquet");
    let empty = dir.join("empty.parquet");
    run_python(FOREIGN_FILE, &[&foreign]);
    run_python(FOREIGN_FILE, &[&claims, Path::new("claim")]);
    let whole = std::fs::read(d.report.join(&landed[1])).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    std::fs::write(&empty, b"").unwrap();
    let snappy = d.report.join(&landed[landed.len() / 2]);
    run_python(SNAPPY_REWRITE, &[&snappy]);
    std::fs::rename(format!("{}.snappy", snappy.display()), &snappy).unwrap();
    ledger.faults = 5;
    let bad = [&foreign, &claims, &truncated, &empty];

    let (code, after, said) = windows(&d.report, &["--format", "json", "--explain"]);
    assert!(
        !said.contains("panicked"),
        "landfall windows panicked:\n{said}"
    );
    assert_eq!(code, Some(0), "landfall windows failed:\n{said}");
    assert!(after == before, "the rows changed:\n{said}");
    for f in [&claims, &truncated, &empty] {
        assert!(
            said.lines()
                .any(|l| l.contains("WARN") && l.contains(path_str(f))),
            "no warning names {}:\n{said}",
            f.display()
        );
    }
    assert!(
        !said.contains(path_str(&snappy)),
        "the Snappy file is reported:\n{said}"
    );
    let scan = scan_counts(&said);
    assert_eq!(
        (
            scan["files_skipped"],
            scan["files_unreadable"],
            scan["files_read"]
        ),
        (1, 3, landed.len() as u64),
        "{said}"
    );

    let v = verify(&topic, Some(&group), &d);
    ledger.verify_runs += 1;
    assert!(
        !v.stderr.contains("panicked"),
        "verify panicked:\n{}",
        v.stderr
    );
    assert_eq!(v.exit, Some(1), "{}", v.report);
    let unreadable = v.kinds.get("unreadable_file").copied();
    assert_eq!(
        (unreadable, v.discrepancies()),
        (Some(bad.len()), bad.len()),
        "one unreadable_file per bad file and nothing else: {:?}\n{}",
        v.kinds,
        v.report
    );
    let mut named: Vec<PathBuf> = v.report["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| PathBuf::from(x["path"].as_str().expect("the file is named")))
        .collect();
    named.sort();
    let mut want: Vec<PathBuf> = bad.iter().map(|p| p.to_path_buf()).collect();
    want.sort();
    assert_eq!(named, want);
    assert_eq!(v.int("window_files"), landed.len() as u64, "{}", v.report);
    assert_eq!(v.int("pending_records"), 0);
    ledger.events = v.int("records");

    let mut cmd = Command::new(landfall_bin());
    cmd.arg("serve").arg("--output-dir").arg(&d.report);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "serve");
    let mut serve = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(30));
    let (status, body) = http_get(port, "/windows").unwrap_or_else(|| {
        panic!(
            "landfall serve gave no answer to /windows:\n{}",
            read_log(&log)
        )
    });
    assert_eq!(status, 200, "GET /windows: {body}\n{}", read_log(&log));
    assert_eq!(body.trim_end(), before.trim_end());
    let status = serve.stop(
        libc::SIGTERM,
        Duration::from_secs(30),
        "landfall serve",
        None,
    );
    assert!(status.success(), "landfall serve exited with {status}");
    let said = strip_ansi(&read_log(&log));
    assert!(
        !said.contains("panicked"),
        "landfall serve panicked:\n{said}"
    );
    ledger.book();
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `--state-dir` on a 32 KiB tmpfs that the store fills. The run stops (exit 1, "No space
/// left on device") without committing past what it did not write. Restarts on the still
/// full disk fail the same way and leave the store where it is: no `<state-dir>.unreadable`
/// copy, no new store. With the disk made bigger, a restart finishes byte-identical to a
/// clean run. (Before: each restart took the full disk for corruption and moved the healthy
/// store aside, one more copy each time.)
#[test]
fn a_full_state_disk_is_an_io_error_and_the_store_stays_where_it_is() {
    let mut ledger = Ledger::new("edge_state_full");
    let topic = unique_topic("state-full");
    produce_golden(&topic, 30_000);
    let d = dirs();
    // The store is one level below the mount point, so a copy beside it would be seen.
    let disk = d.tmp.path().join("state-disk");
    std::fs::create_dir_all(&disk).unwrap();
    mount(&["-t", "tmpfs", "-o", "size=32k", "tmpfs", path_str(&disk)]);
    let _m = Mounted(disk.clone());
    let state = disk.join("state");
    let group = format!("{topic}-g");
    let run = |name: &str| {
        let mut cmd = consume_cmd(&topic, &group, &d, true);
        cmd.env("LANDFALL_STATE_DIR", &state);
        run_within(cmd, d.tmp.path(), name, EXIT_WITHIN)
    };

    let (code, said) = run("full");
    ledger.faults += 1;
    assert_eq!(code, Some(1), "expected a clean failure:\n{said}");
    assert!(said.contains("No space left on device"), "{said}");
    let v = assert_no_discrepancy(verify(&topic, Some(&group), &d), &mut ledger);
    assert!(v.int("pending_records") > 0, "{}", v.report);
    assert_eq!(names_in(&disk), ["state"]);

    for attempt in ["still-full-1", "still-full-2"] {
        ledger.restarts += 1;
        let (code, said) = run(attempt);
        assert_eq!(
            code,
            Some(1),
            "{attempt}: expected a clean failure:\n{said}"
        );
        for s in ["No space left on device", path_str(&state)] {
            assert!(
                said.contains(s),
                "{attempt}: the error does not say {s:?}:\n{said}"
            );
        }
        assert!(
            !said.contains("moving it aside"),
            "{attempt}: the store was taken for corrupt:\n{said}"
        );
        assert_eq!(
            names_in(&disk),
            ["state"],
            "{attempt}: the store was moved or copied:\n{said}"
        );
    }

    mount(&["-o", "remount,size=64m", path_str(&disk)]);
    ledger.restarts += 1;
    let (code, said) = run("bigger");
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(names_in(&disk), ["state"]);
    assert_same_output(&clean_run(&topic), &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// Window files of partition `p` under the report.
fn files_of_partition(d: &Dirs, p: i32) -> usize {
    let tag = format!("-p{p:04}-");
    parquet_files(&d.report)
        .iter()
        .filter(|f| f.to_string_lossy().contains(&tag))
        .count()
}

/// A partition added to the topic under a running consumer (no `--exit-on-idle`) is read
/// within seconds: its records close windows, and their files land within 30 s. Then SIGTERM
/// stops the consumer cleanly and verify finds nothing wrong. (Before: librdkafka's default
/// metadata refresh, five minutes, passed before the consumer saw the new partition.)
#[test]
fn a_partition_added_to_a_running_topic_is_consumed_within_seconds() {
    let mut ledger = Ledger::new("edge_new_partition");
    let topic = unique_topic("added-partition");
    create_topic(&topic, 1);
    // Five minutes of event time, from 06:49 to 06:54: the watermark closes the windows of
    // 06:49, 06:50 and 06:51.
    produce_plain(&topic, 0, &views(1_200, SIM_START_MS, 250));
    let d = dirs();
    let group = format!("{topic}-g");
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let mut child = ChildGuard::spawn(cmd);
    wait_until("partition 0's windows", Duration::from_secs(90), || {
        files_of_partition(&d, 0) >= 3
    });

    let added = NewPartitions::new(&topic, 2);
    let r = block_on(admin().create_partitions([&added], &AdminOptions::new())).unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "adding a partition: {r:?}");
    wait_until("the new partition", Duration::from_secs(30), || {
        partition_count(&topic) == 2
    });
    ledger.faults += 1;
    // The same five minutes, half as dense: three windows of partition 1 close.
    produce_plain(&topic, 1, &views(600, SIM_START_MS, 500));
    let t0 = Instant::now();
    let deadline = Duration::from_secs(30);
    while files_of_partition(&d, 1) < 3 {
        assert!(
            t0.elapsed() < deadline,
            "no window file of the added partition within {deadline:?} ({} of 3); the \
             consumer's log:\n{}",
            files_of_partition(&d, 1),
            strip_ansi(&read_log(&log))
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "the added partition's windows landed {:?} after its records",
        t0.elapsed()
    );

    let status = child.stop(
        libc::SIGTERM,
        Duration::from_secs(30),
        "consumer after SIGTERM",
        None,
    );
    assert!(
        status.success(),
        "exit {status}:\n{}",
        strip_ansi(&read_log(&log))
    );
    assert_no_discrepancy(verify(&topic, Some(&group), &d), &mut ledger);
    ledger.book();
}

/// `landfall serve` refuses, with a 400 naming the parameter, a relative time with two signs
/// (`from=--1h`, once read as an hour from now) and a parameter given twice
/// (`network=1&network=2`, once answered with the last of them); the plain forms are still
/// answered. (Before: both were 200s.)
#[test]
fn serve_refuses_a_signed_relative_time_and_a_repeated_parameter() {
    let tmp = scratch();
    let report = tmp.path().join("report");
    std::fs::create_dir(&report).unwrap();
    let mut cmd = Command::new(landfall_bin());
    cmd.arg("serve").arg("--output-dir").arg(&report);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, tmp.path(), "serve");
    let mut serve = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(30));
    for (query, parameter, value) in [
        ("from=--1h", "from", "--1h"),
        ("network=1&network=2", "network", "2"),
    ] {
        let (status, body) = http_get(port, &format!("/windows?{query}")).expect("an answer");
        assert_eq!(status, 400, "{query}: {body}");
        let errors: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
        let named: Vec<(&str, &str)> = errors["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["parameter"].as_str().unwrap(),
                    e["value"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(named, [(parameter, value)], "{query}: {body}");
    }
    for query in ["from=-1h", "network=1"] {
        let (status, body) = http_get(port, &format!("/windows?{query}")).expect("an answer");
        assert_eq!((status, body.trim()), (200, "[]"), "{query}");
    }
    let status = serve.stop(
        libc::SIGTERM,
        Duration::from_secs(30),
        "landfall serve",
        None,
    );
    assert!(status.success(), "landfall serve exited with {status}");
}

/// Plants `n` stale temporary files (named as a crash between write and link leaves them,
/// `.<name>.<pid>-<n>.tmp`, and older than the sweep's ten minutes) under `dir`, spread over
/// hour directories.
fn plant_stale_temps(dir: &Path, n: usize) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3_600);
    for i in 0..n {
        let hour = dir.join(format!("date=2024-09-13/hour={:02}", 6 + i % 4));
        std::fs::create_dir_all(&hour).unwrap();
        let path = hour.join(format!(".stale-p{:04}-w{i}.parquet.4242-{i}.tmp", i % 3));
        let f = std::fs::File::create(&path).unwrap();
        f.set_modified(old).unwrap();
    }
}

/// Two consumers (two groups, one report and rejects directory, the same settings, a state
/// store each) start at the same instant on trees with thousands of stale temporary files:
/// both sweep them at once, and both must take the other's removals in their stride and run
/// to the end. The output is then byte-identical to one clean run, with no temporary file
/// left. (Before: the sweep that lost a race for a file stopped its consumer with exit 1,
/// "No such file or directory".)
#[test]
fn two_consumers_sweeping_the_same_stale_temporary_files_both_run() {
    let mut ledger = Ledger::new("edge_sweeps");
    let topic = unique_topic("sweeps");
    produce_golden(&topic, 6_000);
    let d = dirs();
    // With one stale file, the two sweeps rarely meet; with a thousand, the old sweep lost a
    // race in every run tried.
    plant_stale_temps(&d.report, 5_000);
    plant_stale_temps(&d.rejects, 5_000);
    ledger.faults = 1;
    let groups = [format!("{topic}-a"), format!("{topic}-b")];
    let commands: Vec<(Command, PathBuf)> = groups
        .iter()
        .map(|group| {
            let mut cmd = consume_cmd(&topic, group, &d, true);
            let state = d.tmp.path().join(format!("state-{group}"));
            cmd.env("LANDFALL_STATE_DIR", state);
            let log = log_stderr(&mut cmd, d.tmp.path(), group);
            (cmd, log)
        })
        .collect();
    // Spawned back to back, so that their start-up sweeps overlap.
    let mut children: Vec<(ChildGuard, PathBuf)> = commands
        .into_iter()
        .map(|(cmd, log)| (ChildGuard::spawn(cmd), log))
        .collect();
    for (child, log) in &mut children {
        let status = wait_exit(child.child(), EXIT_WITHIN, "a consumer");
        child.0 = None;
        assert!(
            status.success(),
            "a consumer failed ({status}):\n{}",
            strip_ansi(&read_log(log))
        );
    }
    assert_only_final_files(&d.report);
    assert_only_final_files(&d.rejects);
    assert_same_output(&clean_run(&topic), &d);
    for group in &groups {
        assert_verified(&topic, Some(group), &d, &mut ledger);
    }
    ledger.book();
}
