//! `landfall consume` against the real local Kafka broker: a golden run checked against an
//! independent reference, kill -9 crashes, state loss and corruption, graceful stop, and
//! external readers.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use support::output::*;
use support::*;

const WINDOW_MS: i64 = 60_000;
const LATENESS_MS: i64 = 60_000;
const SKEW_MS: i64 = 300_000;

/// Produces a seeded topic with every kind of awkward record and 20% aborted transactions.
fn produce_golden(topic: &str, count: u64) {
    let mut cmd = landfall(&["produce"]);
    cmd.args([
        "--topic",
        topic,
        "--create-topic",
        "--partitions",
        "3",
        "--count",
        &count.to_string(),
        "--txn-size",
        "1000",
        "--abort-fraction",
        "0.2",
        "--seed",
        "2024",
        "--clock",
        "simulated",
        "--sim-events-per-sec",
        "20",
        "--out-of-order-secs",
        "30",
        "--late-fraction",
        "0.01",
        "--invalid-fraction",
        "0.01",
        "--unknown-campaign-fraction",
        "0.01",
        "--transactional-id",
        topic,
    ]);
    run_ok(cmd);
}

struct Dirs {
    _tmp: tempfile::TempDir,
    report: PathBuf,
    rejects: PathBuf,
    state: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = scratch();
    let root = tmp.path().to_path_buf();
    Dirs {
        report: root.join("report"),
        rejects: root.join("rejects"),
        state: root.join("state"),
        _tmp: tmp,
    }
}

fn consume_cmd(topic: &str, group: &str, d: &Dirs, exit_on_idle: bool) -> std::process::Command {
    let mut cmd = landfall(&["consume"]);
    cmd.args([
        "--topic",
        topic,
        "--group",
        group,
        "--instance-id",
        group,
        "--campaigns",
        path_str(&repo_root().join("data/campaigns_dict/campaigns.csv")),
        "--output-dir",
        path_str(&d.report),
        "--rejects-dir",
        path_str(&d.rejects),
        "--state-dir",
        path_str(&d.state),
        "--idle-timeout-secs",
        "2",
        "--checkpoint-interval-ms",
        "300",
    ]);
    if exit_on_idle {
        cmd.arg("--exit-on-idle");
    }
    cmd
}

fn consume_to_end(topic: &str, group: &str, d: &Dirs) {
    run_ok(consume_cmd(topic, group, d, true));
}

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
    let want = assert_matches_reference(&topic, &d);
    assert!(want.records >= 75_000, "{} committed records", want.records);

    // Aborted records appear nowhere: every key in the output comes from a committed record.
    let uncommitted = read_topic(&topic, "read_uncommitted");
    assert!(
        uncommitted.len() > want.records,
        "the topic has aborted records to skip"
    );

    // Every reason the generator can produce appears, at the right offsets.
    let rejects = read_rejects(&d.rejects);
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

    // No temporary file is matched by a **/*.parquet glob, and nothing is left behind.
    for f in parquet_files(&d.report) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "temporary file {f:?} in the report");
    }

    // External readers: duckdb and pyarrow with hive partitioning.
    let counted: i64 = read_windows(&d.report)
        .values()
        .flat_map(|c| c.values())
        .map(|c| c.0)
        .sum();
    check_external_readers(&d.report, counted);
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
fn kill_9_state_loss_and_corruption_give_identical_files() {
    let topic = unique_topic("crash");
    produce_golden(&topic, 100_000);

    let clean = dirs();
    consume_to_end(&topic, &format!("{topic}-clean"), &clean);
    let want = tree_bytes(&clean.report);
    let want_rejects = tree_bytes(&clean.rejects);
    assert!(want.len() > 100, "{} window files", want.len());

    let crashy = dirs();
    let group = format!("{topic}-crashy");
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
    let mut kills = 0;
    let mut watcher_saw_temp = false;
    let mut round = 0;
    // Kill at random moments until 12 kills have landed mid-run (a run may finish first).
    while kills < 12 && round < 40 {
        round += 1;
        match round {
            4 | 8 => {
                // State loss: the store only speeds up restarts.
                let _ = std::fs::remove_dir_all(&crashy.state);
            }
            6 => garble(&crashy.state),
            _ => {}
        }
        let mut cmd = consume_cmd(&topic, &group, &crashy, true);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = ChildGuard::spawn(cmd);
        let wait = Duration::from_millis(rng.random_range(300..2500));
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            if child.child().try_wait().unwrap().is_some() {
                break;
            }
            watcher_saw_temp |= parquet_files(&crashy.report)
                .iter()
                .any(|f| f.file_name().unwrap().to_string_lossy().starts_with('.'));
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.child().try_wait().unwrap().is_none() {
            child.kill9();
            kills += 1;
        }
    }
    assert!(kills >= 10, "only {kills} kills landed mid-run");
    consume_to_end(&topic, &group, &crashy);
    assert!(
        !watcher_saw_temp,
        "a **/*.parquet glob matched a temporary file"
    );

    let got = tree_bytes(&crashy.report);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the set of window files differs"
    );
    for (name, bytes) in &want {
        assert!(
            got[name] == *bytes,
            "{name:?} differs from the uninterrupted run"
        );
    }
    let got_rejects = tree_bytes(&crashy.rejects);
    assert_eq!(
        read_rejects(&crashy.rejects),
        read_rejects(&clean.rejects),
        "rejects differ"
    );
    assert_eq!(got_rejects.len(), want_rejects.len());
    assert_matches_reference(&topic, &crashy);
}

/// Truncates and scribbles over the store's files.
fn garble(state: &Path) {
    let Ok(entries) = std::fs::read_dir(state) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_file() {
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(len / 3).unwrap();
            drop(f);
            let mut bytes = std::fs::read(&p).unwrap();
            for b in bytes.iter_mut().step_by(7) {
                *b ^= 0x5a;
            }
            std::fs::write(&p, bytes).unwrap();
        }
    }
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
