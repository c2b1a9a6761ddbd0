//! Landing to object storage: the consumer writes to a real S3-compatible server (s3proxy with
//! its filesystem store, started by `scripts/s3`), and every check reads the result with an
//! independent client (pyarrow's S3FileSystem and boto3, `tests/s3_tools.py`), never with the
//! `object_store` crate that wrote it. The reference is the same topic landed on local disk.

mod support;

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use support::harness::*;
use support::s3::S3;
use support::*;

/// Ports of the servers the tests start for themselves (the shared one is on 9000).
const OUTAGE_PORT: u16 = 9004;
const PERMISSIVE_PORT: u16 = 9006;

fn consume_s3(s3: &S3, topic: &str, group: &str, d: &Dirs, exit_on_idle: bool) -> Command {
    let mut cmd = consume_cmd(topic, group, d, exit_on_idle);
    s3.apply(&mut cmd);
    cmd
}

/// `landfall verify` on the S3 prefixes of `d`.
fn verify_s3(s3: &S3, topic: &str, group: Option<&str>, d: &Dirs) -> Verdict {
    let mut cmd = verify_cmd(&brokers(), None, topic, group, &d.report, &d.rejects);
    s3.apply(&mut cmd);
    verdict_of(cmd)
}

fn assert_verified_s3(
    s3: &S3,
    topic: &str,
    group: Option<&str>,
    d: &Dirs,
    ledger: &mut Ledger,
) -> Verdict {
    let v = assert_no_discrepancy(verify_s3(s3, topic, group, d), ledger);
    assert_eq!(
        v.int("pending_records"),
        0,
        "records not landed: {}",
        v.report
    );
    v
}

/// The landing under `got` (S3) is byte for byte the landing under `want` (local disk):
/// the same window and reject file names, and the same SHA-256 for each.
fn assert_same_bytes(s3: &S3, want: &Dirs, got: &Dirs) {
    for (w, g) in [(&want.report, &got.report), (&want.rejects, &got.rejects)] {
        let (w, g) = (s3.digests(w), s3.digests(g));
        assert!(!w.is_empty(), "the reference landed nothing");
        let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).take(5).collect();
        let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{} files in S3, {} on disk; missing (first 5): {missing:?}; extra: {extra:?}",
            g.len(),
            w.len()
        );
        let differ: Vec<_> = w
            .iter()
            .filter(|(k, v)| g[*k] != **v)
            .map(|(k, _)| k)
            .collect();
        assert!(
            differ.is_empty(),
            "files differ from the local landing: {differ:?}"
        );
    }
}

fn stdout_of(mut cmd: Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The golden run landed to `s3://` gives the files of the same run on local disk, byte for
/// byte and row for row as pyarrow's S3FileSystem reads them; `verify`, `landfall windows` and
/// `GET /windows` on the S3 URL agree with their local answers; and nothing but finalized files
/// and the directory markers is ever under the prefix.
#[test]
fn the_golden_run_lands_in_s3_exactly_as_on_disk() {
    let mut ledger = Ledger::new("s3_golden");
    let s3 = S3::shared();
    let topic = unique_topic("s3golden");
    produce_golden(&topic, 30_000);
    let local = clean_run(&topic);
    let d = s3.dirs(&topic);
    let group = format!("{topic}-s3");
    run_ok(consume_s3(&s3, &topic, &group, &d, true));

    assert_same_bytes(&s3, &local, &d);
    let (local_rows, s3_rows) = (s3.rows(&local.report), s3.rows(&d.report));
    assert!(local_rows.as_object().is_some_and(|m| m.len() > 50));
    assert!(local_rows == s3_rows, "pyarrow reads other rows from S3");
    assert!(s3.rows(&local.rejects) == s3.rows(&d.rejects));
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);

    // Only finished files and the markers: no temporary object, no leftover probe.
    for key in s3.keys(&s3.url(&topic)) {
        let marker = key == format!("report/_landfall.{topic}.json")
            || key == format!("rejects/_landfall.{topic}.json");
        let landed = (key.starts_with("report/date=") || key.starts_with("rejects/partition="))
            && key.ends_with(".parquet");
        assert!(
            marker || landed,
            "unexpected object under the prefix: {key}"
        );
    }

    let windows = |report: &Path| {
        let mut cmd = landfall(&[
            "windows",
            "--format",
            "csv",
            "--output-dir",
            path_str(report),
        ]);
        s3.apply(&mut cmd);
        stdout_of(cmd, "landfall windows")
    };
    let want = windows(&local.report);
    assert!(want.lines().count() > 100, "{want}");
    assert_eq!(windows(&d.report), want, "landfall windows on S3");

    let mut cmd = landfall(&["serve", "--output-dir", path_str(&d.report)]);
    http_on_any_port(s3.apply(&mut cmd));
    let log = log_stderr(&mut cmd, d.tmp.path(), "serve");
    let _serve = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(20));
    let (status, body) = http_get(port, "/windows?format=csv").expect("GET /windows");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, want, "GET /windows on S3");
    ledger.book();
}

/// kill -9 at random moments while the consumer lands to S3 (and during start-up, and once
/// with its state deleted): the restarts finish with the files of an uninterrupted run.
#[test]
fn random_kills_while_landing_to_s3_give_identical_output() {
    let mut ledger = Ledger::new("s3_kills");
    let s3 = S3::shared();
    let topic = unique_topic("s3kills");
    produce_golden(&topic, 120_000);
    let local = clean_run(&topic);
    let d = s3.dirs(&topic);
    let group = format!("{topic}-kills");
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(16);
    let (mut kills, mut round, mut early) = (0, 0, 0);
    while kills < 22 {
        round += 1;
        assert!(round < 70, "runs keep finishing before the kill");
        if round == 7 {
            // State loss: the files already in S3 are found there and kept.
            let _ = std::fs::remove_dir_all(&d.state);
            ledger.faults += 1;
        }
        let mut cmd = consume_s3(&s3, &topic, &group, &d, true);
        cmd.env("LANDFALL_CHECKPOINT_INTERVAL_MS", "100");
        log_stderr(&mut cmd, d.tmp.path(), "kills");
        let mut child = ChildGuard::spawn(cmd);
        let wait = if round % 5 == 0 {
            Duration::from_millis(rng.random_range(5..60))
        } else {
            Duration::from_millis(rng.random_range(150..900))
        };
        let t0 = Instant::now();
        while t0.elapsed() < wait && child.child().try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.child().try_wait().unwrap().is_none() {
            child.kill9();
            kills += 1;
            early += u64::from(wait < Duration::from_millis(60));
        }
    }
    ledger.kills = kills;
    ledger.restarts = round;
    ledger.faults += kills;
    run_ok(consume_s3(&s3, &topic, &group, &d, true));
    assert!(early >= 2, "only {early} kills during start-up");
    assert_same_bytes(&s3, &local, &d);
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// The S3 server stops for longer than `--store-timeout` while windows wait to land: the
/// consumer stops with an error naming the store, the object and the timeout, having
/// committed nothing past what landed; with the server back, a restart finishes identical.
#[test]
fn an_s3_outage_longer_than_the_retries_stops_the_consumer_and_a_restart_finishes() {
    let mut ledger = Ledger::new("s3_outage");
    let home = scratch();
    let s3 = S3::own(OUTAGE_PORT, &home.path().join("s3"), "aws-v2-or-v4");
    let topic = unique_topic("s3outage");
    run_ok(produce_cmd(&topic, 3, 6_000, 1, 0));
    let d = s3.dirs(&topic);
    let group = format!("{topic}-g");
    let mut cmd = consume_s3(&s3, &topic, &group, &d, false);
    cmd.args(["--store-timeout", "3s"])
        .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let log = log_stderr(&mut cmd, d.tmp.path(), "outage");
    let mut child = ChildGuard::spawn(cmd);
    let report = path_str(&d.report).to_string();
    wait_until(
        "the first windows landed in S3",
        Duration::from_secs(60),
        || s3.keys(&report).iter().any(|k| k.ends_with(".parquet")),
    );
    s3.stop();
    ledger.faults += 1;
    // Records that close the open windows, which now cannot land.
    run_ok(produce_cmd(&topic, 3, 6_000, 2, 400));
    let t0 = Instant::now();
    let status = wait_exit(
        child.child(),
        Duration::from_secs(120),
        "consumer during the outage",
    );
    child.0 = None;
    let said = read_log(&log);
    assert_eq!(status.code(), Some(1), "{said}");
    for want in [
        "kept failing",
        "--store-timeout 3s",
        "nothing past the last landed file was committed",
    ] {
        assert!(said.contains(want), "no {want:?} in:\n{said}");
    }
    eprintln!(
        "the consumer stopped {:.1} s after the second batch",
        t0.elapsed().as_secs_f64()
    );

    s3.start();
    // Committed offsets never pass a record that did not land.
    assert_no_discrepancy(verify_s3(&s3, &topic, Some(&group), &d), &mut ledger);
    ledger.restarts += 1;
    run_ok(consume_s3(&s3, &topic, &group, &d, true));
    let local = clean_run(&topic);
    assert_same_bytes(&s3, &local, &d);
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// An object somebody else put at a key Landfall will land is never overwritten: the consumer
/// stops naming it, commits nothing past it, and once it is moved away a restart finishes
/// with the output of an undisturbed run.
#[test]
fn a_foreign_object_at_an_expected_key_is_kept_and_named() {
    let mut ledger = Ledger::new("s3_foreign");
    let s3 = S3::shared();
    let topic = unique_topic("s3foreign");
    produce_golden(&topic, 6_000);
    let local = clean_run(&topic);
    let names: Vec<String> = s3.digests(&local.report).into_keys().collect();
    let taken = &names[names.len() / 2];
    let d = s3.dirs(&topic);
    let report = path_str(&d.report).to_string();
    let foreign = "a CSV export somebody wrote here\n";
    s3.tool(&["put", &report, taken, foreign]);
    ledger.faults += 1;

    let group = format!("{topic}-g");
    let mut cmd = consume_s3(&s3, &topic, &group, &d, true);
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("{report}/{taken} is already there")),
        "the error does not name the object:\n{said}"
    );
    assert_eq!(
        s3.tool(&["get", &report, taken]),
        foreign.as_bytes(),
        "overwritten"
    );
    // The foreign object is the one thing verify reports: nothing past it was committed.
    let v = verify_s3(&s3, &topic, Some(&group), &d);
    ledger.verify_runs += 1;
    assert_eq!(
        v.kinds,
        [("unreadable_file".to_string(), 1)].into_iter().collect(),
        "{}",
        v.report
    );

    s3.tool(&["rm", &report, taken]);
    ledger.restarts += 1;
    run_ok(consume_s3(&s3, &topic, &group, &d, true));
    assert_same_bytes(&s3, &local, &d);
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// A store that ignores `If-None-Match` (an s3proxy that checks no signatures, behind a proxy
/// that drops the conditional headers) fails the start-up probe: the consumer refuses to land
/// there and says why and what the override is. The same server reached directly passes. With
/// `--assume-single-writer` it lands, looking up each file first, so a replay keeps them.
#[test]
fn the_probe_refuses_a_store_that_overwrites() {
    let mut ledger = Ledger::new("s3_probe");
    let home = scratch();
    let s3 = S3::own(PERMISSIVE_PORT, &home.path().join("s3"), "none");
    let mut proxy = Command::new(python());
    proxy
        .arg(repo_root().join("tests/s3_tools.py"))
        .args([
            "drop-conditional",
            "0",
            &format!("http://127.0.0.1:{}", s3.port),
        ])
        .stdout(Stdio::piped());
    let mut proxy = ChildGuard::spawn(proxy);
    let mut line = String::new();
    std::io::BufReader::new(proxy.child().stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the proxy said {line:?}"))
        .to_string();
    let through_proxy = |cmd: &mut Command| {
        cmd.env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ENDPOINT", &endpoint);
    };
    let topic = unique_topic("s3probe");
    produce_golden(&topic, 3_000);
    let local = clean_run(&topic);

    let d = s3.dirs(&format!("{topic}/refused"));
    let mut cmd = consume_s3(&s3, &topic, &format!("{topic}-refused"), &d, true);
    through_proxy(&mut cmd);
    let t0 = Instant::now();
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    for want in [
        "does not enforce conditional writes",
        "--assume-single-writer",
    ] {
        assert!(said.contains(want), "no {want:?} in:\n{said}");
    }
    assert_eq!(
        s3.keys(&s3.url(&format!("{topic}/refused"))),
        Vec::<String>::new()
    );
    ledger.faults += 1;

    // The same server without the proxy enforces the condition: the probe passes.
    let direct = s3.dirs(&format!("{topic}/direct"));
    run_ok(consume_s3(
        &s3,
        &topic,
        &format!("{topic}-direct"),
        &direct,
        true,
    ));
    assert_same_bytes(&s3, &local, &direct);

    let d = s3.dirs(&format!("{topic}/single"));
    let group = format!("{topic}-single");
    for run in 0..2 {
        if run == 1 {
            let _ = std::fs::remove_dir_all(&d.state);
            ledger.restarts += 1;
        }
        let mut cmd = consume_s3(&s3, &topic, &group, &d, true);
        through_proxy(cmd.arg("--assume-single-writer"));
        let out = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        let told = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{said}");
        assert!(
            said.contains("--assume-single-writer: landing anyway"),
            "{said}"
        );
        if run == 1 {
            assert!(
                told.contains(" 0 window files landed"),
                "the replay rewrote files: {told}"
            );
        }
    }
    assert_same_bytes(&s3, &local, &d);
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// The consumer dies (abort) right after each of three PUTs succeeds, before anything after it
/// is checkpointed or committed, with new records before every run: each restart finds the
/// object, checks its footer, keeps it, and the end is byte-identical to local disk.
#[test]
fn a_crash_right_after_a_put_keeps_the_object_and_finishes_identical() {
    let mut ledger = Ledger::new("s3_failpoints");
    let s3 = S3::shared();
    let topic = unique_topic("s3fp");
    let d = s3.dirs(&topic);
    let group = format!("{topic}-fp");
    for k in 0..3u64 {
        run_ok(produce_cmd(&topic, 3, 3_000, 300 + k, k as i64 * 150));
        let mut cmd = consume_s3(&s3, &topic, &group, &d, true);
        cmd.env("LANDFALL_FAILPOINT", "after-put:1")
            .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
        let out = cmd.output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            killed_by(out.status),
            Some(libc::SIGABRT),
            "run {k} did not die after a PUT (is the binary built with --features \
             failpoints?):\n{said}"
        );
        assert!(said.contains("failpoint after-put hit"), "{said}");
        ledger.faults += 1;
        ledger.kills += 1;
        ledger.restarts += 1;
    }
    run_ok(consume_s3(&s3, &topic, &group, &d, true));
    let local = clean_run(&topic);
    assert_same_bytes(&s3, &local, &d);
    assert_verified_s3(&s3, &topic, Some(&group), &d, &mut ledger);
    ledger.book();
}
