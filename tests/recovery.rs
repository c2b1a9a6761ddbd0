//! Crash and restart: the consumer dies at every step of the landing protocol (failpoints),
//! and at random moments (kill -9, also during recovery, with the state store deleted or
//! garbled now and then). Every run ends with `landfall verify` and a byte-for-byte comparison
//! with a run that never crashed.
//!
//! Needs the `failpoints` feature (`scripts/test` enables it). `LANDFALL_SOAK=1` makes the
//! random-kill run longer.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use support::harness::*;
use support::output::*;
use support::*;

/// Every step of the protocol, in the order a landing reaches them.
const FAILPOINTS: [&str; 11] = [
    // The worker has sent a group to land on its own thread and goes on; the group may be
    // at any of the steps below.
    "group-in-flight",
    "after-temp-write",
    "after-file-fsync",
    "after-rename",
    // A group of files lands together (see `sink::group`): one has landed, another has not;
    // then all are linked and none of their directories is fsynced yet.
    "between-group-files",
    "after-group-files",
    "after-dir-fsync",
    "after-sled-batch",
    "after-sled-flush",
    "after-kafka-commit",
    "during-recovery",
];

const HITS_PER_FAILPOINT: u64 = 3;

#[test]
fn every_failpoint_three_times_then_identical_output() {
    crash_at_each("failpoints", &FAILPOINTS, None);
}

/// The same with `--fsync file-system`, at the steps of a landing around the sync: one
/// syncfs per group instead of an fsync per file changes nothing a crash can leave behind.
/// With named temporary files (`LANDFALL_NAMED_TEMP_FILES=1`), as where the file system has
/// no unnamed ones (`O_TMPFILE`), so the crashes cover that way of landing too.
#[test]
fn every_landing_failpoint_with_one_syncfs_per_group_then_identical_output() {
    crash_at_each(
        "failpoints_syncfs",
        &[
            "after-temp-write",
            "after-file-fsync",
            "between-group-files",
            "after-group-files",
            "after-dir-fsync",
        ],
        Some("file-system"),
    );
}

/// Kills the consumer [`HITS_PER_FAILPOINT`] times at each of `failpoints` (with `--fsync`
/// set to `fsync`, if given, and then with named temporary files), then finishes the topic
/// and compares with a clean run.
fn crash_at_each(name: &'static str, failpoints: &[&'static str], fsync: Option<&str>) {
    let mut ledger = Ledger::new(name);
    let topic = unique_topic(name);
    let d = dirs();
    let group = format!("{topic}-fp");
    let mut hits = std::collections::BTreeMap::new();
    let mut glob = GlobWatch::default();
    let mut chunk = 0;
    for &fp in failpoints {
        for k in 0..HITS_PER_FAILPOINT {
            // New records before every run, so every run has windows to land and offsets to
            // commit: it dies at the first one. No idle closes until the end, so the output
            // stays a function of the log alone.
            run_ok(produce_cmd(
                &topic,
                3,
                3_000,
                100 + chunk,
                chunk as i64 * 150,
            ));
            chunk += 1;
            let mut cmd = consume_cmd(&topic, &group, &d, true);
            cmd.env("LANDFALL_FAILPOINT", format!("{fp}:1"))
                .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600")
                .env("LANDFALL_CHECKPOINT_INTERVAL_MS", "20");
            if let Some(f) = fsync {
                cmd.env("LANDFALL_FSYNC", f)
                    .env("LANDFALL_NAMED_TEMP_FILES", "1");
            }
            let log = log_stderr(&mut cmd, d.tmp.path(), &format!("{fp}-{k}"));
            let mut child = ChildGuard::spawn(cmd);
            let status = wait_exit(child.child(), Duration::from_secs(60), fp);
            child.0 = None;
            let stderr = read_log(&log);
            assert_eq!(
                killed_by(status),
                Some(libc::SIGABRT),
                "run {k} with failpoint {fp} did not die there (status {status}); is the binary \
                 built with --features failpoints? stderr:\n{stderr}"
            );
            assert!(
                stderr.contains(&format!("failpoint {fp} hit")),
                "died elsewhere:\n{stderr}"
            );
            *hits.entry(fp).or_insert(0u64) += 1;
            ledger.faults += 1;
            ledger.kills += 1;
            ledger.restarts += 1;
            // Readers never see a temporary file, whatever step the crash was at: everything
            // a **/*.parquet glob matches has a final name and a complete footer.
            let temps = glob.check(&d.report) + glob.check(&d.rejects);
            // A crash between writing the temporary file and linking it leaves a named file
            // (until it is old enough to be removed): the check above really met one. An
            // unnamed one goes with the process.
            if ["after-temp-write", "after-file-fsync"].contains(&fp) {
                let named = fsync.is_some();
                assert!(
                    (temps > 0) == named,
                    "{temps} temporary files left by a crash at {fp} (named: {named}): {:?}",
                    all_files(&d.report)
                );
            }
        }
    }
    consume_to_end(&topic, &group, &d);
    eprintln!(
        "failpoint hits: {hits:?}; {} temporary files seen by {} looks",
        glob.temps_seen.len(),
        glob.looks
    );
    assert!(hits.values().all(|n| *n >= HITS_PER_FAILPOINT));

    let clean = dirs();
    consume_to_end(&topic, &format!("{topic}-clean"), &clean);
    assert_same_output(&clean, &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

#[test]
fn fifty_random_kills_with_state_loss_give_identical_output() {
    let mut ledger = Ledger::new("random_kills");
    let soak = std::env::var("LANDFALL_SOAK").is_ok_and(|v| v == "1");
    let (events, kills_wanted) = if soak {
        (2_500_000, 300)
    } else {
        (625_000, 50)
    };
    let topic = unique_topic("kills");
    produce_golden(&topic, events);

    let clean = dirs();
    consume_to_end(&topic, &format!("{topic}-clean"), &clean);
    assert!(tree_bytes(&clean.report).len() > 1000);

    let d = dirs();
    let group = format!("{topic}-kills");
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
    let mut kills = 0;
    let mut early_kills = 0;
    let mut glob = GlobWatch::default();
    let mut round = 0;
    while kills < kills_wanted {
        round += 1;
        assert!(
            round < kills_wanted * 3,
            "runs keep finishing before the kill"
        );
        match round % 17 {
            // State loss: the store only speeds up restarts.
            5 => {
                let _ = std::fs::remove_dir_all(&d.state);
            }
            11 => garble(&d.state),
            _ => {}
        }
        let mut cmd = consume_cmd(&topic, &group, &d, true);
        cmd.env("LANDFALL_CHECKPOINT_INTERVAL_MS", "100");
        log_stderr(&mut cmd, d.tmp.path(), "kills");
        let mut child = ChildGuard::spawn(cmd);
        // One run in five is killed within 60 ms of its start: during recovery.
        let wait = if round % 5 == 0 {
            Duration::from_millis(rng.random_range(5..60))
        } else {
            Duration::from_millis(rng.random_range(100..700))
        };
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            if child.child().try_wait().unwrap().is_some() {
                break;
            }
            // What a reader globbing the trees sees right now.
            glob.check(&d.report);
            glob.check(&d.rejects);
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.child().try_wait().unwrap().is_none() {
            child.kill9();
            kills += 1;
            if wait < Duration::from_millis(60) {
                early_kills += 1;
            }
        }
    }
    ledger.kills = kills;
    ledger.restarts = round;
    ledger.faults = kills + 2 * (round / 17);
    consume_to_end(&topic, &group, &d);
    // The watcher fails at once when a glob matches an incomplete file. Temporary files have
    // no name (O_TMPFILE), so no listing, however timed, ever shows one, and no kill leaves
    // one behind.
    eprintln!(
        "random kills: the watcher looked {} times and saw {} temporary files",
        glob.looks,
        glob.temps_seen.len()
    );
    assert!(
        glob.temps_seen.is_empty(),
        "the watcher saw temporary files in {} looks: {:?}",
        glob.looks,
        glob.temps_seen
    );
    assert!(early_kills >= 5, "only {early_kills} kills during start-up");
    assert_same_output(&clean, &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    assert!(
        ledger.events >= events * 4 / 5 - 5_000,
        "{} committed events",
        ledger.events
    );
    ledger.book();
}

/// Truncates and scribbles over the store's files.
/// The consumer closes idle partitions by the wall clock and dies right after landing those
/// windows, before the commit that follows. Then records arrive for the windows it closed:
/// late in the first run's terms. The restart must repeat the idle close from the mark in the
/// commit it starts from and reject them as late; without the mark it counted them into
/// windows whose files already existed, and they landed nowhere (verify: `missing_reject`).
#[test]
fn a_crash_right_after_an_idle_close_is_replayed_from_its_mark() {
    let mut ledger = Ledger::new("idle_replay");
    let topic = unique_topic("idlereplay");
    let d = dirs();
    let group = format!("{topic}-g");
    run_ok(produce_cmd(&topic, 3, 6_000, 1, 0));
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.env("LANDFALL_FAILPOINT", "after-idle-close:1")
        .env("LANDFALL_LOG", "info");
    let log = log_stderr(&mut cmd, d.tmp.path(), "first");
    let mut child = ChildGuard::spawn(cmd);
    let status = wait_exit(child.child(), Duration::from_secs(60), "first run");
    child.0 = None;
    let stderr = read_log(&log);
    assert_eq!(
        killed_by(status),
        Some(libc::SIGABRT),
        "the first run did not die after its idle close (status {status}):\n{stderr}"
    );
    assert!(
        stderr.contains("idle partition: closing windows by the wall clock"),
        "{stderr}"
    );
    ledger.faults += 1;
    ledger.kills += 1;
    let landed = parquet_files(&d.report).len();
    assert!(landed > 0, "the idle close landed nothing");

    // The same simulated minutes again, from another seed: every window they fall in was
    // closed by the wall clock.
    run_ok(produce_cmd(&topic, 3, 6_000, 2, 0));
    ledger.restarts += 1;
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    cmd.env("LANDFALL_LOG", "info");
    let log = log_stderr(&mut cmd, d.tmp.path(), "restart");
    let status = cmd.status().expect("restart");
    let said = read_log(&log);
    assert!(status.success(), "restart: {status}\n{said}");
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    assert!(
        said.contains("repeating an idle close of an earlier run"),
        "the restart did not repeat the idle close:\n{said}"
    );
    let late = read_rejects(&d.rejects)
        .values()
        .filter(|r| r.as_str() == "late")
        .count();
    // At least the partitions the first run closed (one tick may close one or all three)
    // reject the second batch's records as late: about 1,600 records each.
    assert!(
        late > 1_000,
        "only {late} late rejects for the second batch"
    );
    ledger.book();
}

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
