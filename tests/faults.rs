//! Faults outside the consumer: the broker goes down (also before the consumer starts), the
//! disk fills up, the output directory turns read-only or disappears, a consumer turns into a
//! zombie, producers die mid-transaction. Each test ends with `landfall verify` and, where the
//! output is a function of the log alone, a byte-for-byte comparison with a clean run.
//!
//! The disk tests mount a small tmpfs and read-only bind mounts, so they need root (or
//! CAP_SYS_ADMIN); CI machines of this kind run as root.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::broker::*;
use support::harness::*;
use support::output::*;
use support::*;

#[test]
fn broker_down_at_start_and_killed_mid_run_loses_nothing() {
    let mut ledger = Ledger::new("broker_restart");
    let broker = OwnBroker::fresh(20);
    broker.script("start");
    let topic = unique_topic("bounce");
    run_ok(broker.cmd(produce_cmd(&topic, 3, 40_000, 1, 0)));

    // The broker is down when the consumer starts: it waits.
    broker.script("stop");
    ledger.faults += 1;
    let d = dirs();
    let group = format!("{topic}-g");
    let mut cmd = broker.cmd(consume_cmd(&topic, &group, &d, false));
    cmd.env("LANDFALL_IDLE_TIMEOUT_SECS", "3600")
        .args(["--connect-timeout-secs", "120"]);
    cmd.env("LANDFALL_LOG", "info");
    let log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let mut consumer = ChildGuard::spawn(cmd);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        consumer.child().try_wait().unwrap().is_none(),
        "the consumer gave up while the broker was down:\n{}",
        read_log(&log)
    );
    broker.script("start");
    wait_until("windows to land", Duration::from_secs(60), || {
        window_file_count(&d) >= 20
    });

    // A hard crash of the broker in the middle of the run.
    broker.script("kill");
    ledger.faults += 1;
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        consumer.child().try_wait().unwrap().is_none(),
        "the consumer died with the broker:\n{}",
        read_log(&log)
    );
    broker.script("start");
    let before = window_file_count(&d);
    run_ok(broker.cmd(produce_cmd(&topic, 3, 40_000, 2, sim_secs(40_000))));
    let deadline = Instant::now() + Duration::from_secs(90);
    while window_file_count(&d) < before + 30 {
        let tail = || {
            let l = read_log(&log);
            let lines: Vec<&str> = l.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        if let Some(s) = consumer.child().try_wait().unwrap() {
            panic!("the consumer exited ({s}):\n{}", tail());
        }
        assert!(
            Instant::now() < deadline,
            "no windows of the second batch within 90 s of the restart ({} files, {before} \
             before); consumer log:\n{}",
            window_file_count(&d),
            tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = consumer.stop(libc::SIGTERM, Duration::from_secs(30), "consumer", None);
    assert!(
        status.success(),
        "consumer exit {status}:\n{}",
        read_log(&log)
    );

    // Finish (the last windows close when the partitions go idle) and compare.
    ledger.restarts += 1;
    run_ok(broker.cmd(consume_cmd(&topic, &group, &d, true)));
    let clean = dirs();
    run_ok(broker.cmd(consume_cmd(&topic, &format!("{topic}-clean"), &clean, true)));
    assert_same_output(&clean, &d);
    let v = verify_dirs(
        &broker.brokers(),
        &topic,
        Some(&group),
        &d.report,
        &d.rejects,
    );
    let v = assert_no_discrepancy(v, &mut ledger);
    assert_eq!(v.int("pending_records"), 0);
    ledger.book();
}

#[test]
fn disk_full_stops_without_commit_and_resumes_once_space_is_freed() {
    let mut ledger = Ledger::new("disk_full");
    let topic = unique_topic("diskfull");
    produce_golden(&topic, 100_000);
    let d = dirs();
    std::fs::create_dir_all(&d.report).unwrap();
    mount(&[
        "-t",
        "tmpfs",
        "-o",
        "size=256k",
        "tmpfs",
        path_str(&d.report),
    ]);
    let _m = Mounted(d.report.clone());
    let group = format!("{topic}-g");

    let mut cmd = consume_cmd(&topic, &group, &d, true);
    let log = log_stderr(&mut cmd, d.tmp.path(), "full");
    let mut child = ChildGuard::spawn(cmd);
    let status = wait_exit(
        child.child(),
        Duration::from_secs(60),
        "consumer on a full disk",
    );
    child.0 = None;
    assert_stopped_cleanly(
        status,
        &log,
        &["No space left on device"],
        &topic,
        &group,
        &d,
        &mut ledger,
    );
    assert!(
        window_file_count(&d) > 10,
        "some windows landed before the disk filled"
    );
    // No debris left to keep the disk full, anywhere in the tree (temporary files sit next
    // to their final names, under date=/hour=).
    let temps: Vec<PathBuf> = all_files(&d.report)
        .into_iter()
        .filter(|f| {
            let name = f.file_name().unwrap().to_string_lossy();
            name.ends_with(".tmp") || name.starts_with('.')
        })
        .collect();
    assert!(
        temps.is_empty(),
        "{} temporary files left on the full disk: {:?}",
        temps.len(),
        &temps[..temps.len().min(5)]
    );

    mount(&["-o", "remount,size=64m", path_str(&d.report)]);
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn read_only_output_fails_clearly_and_loses_nothing() {
    let mut ledger = Ledger::new("output_read_only");
    let topic = unique_topic("readonly");
    produce_golden(&topic, 30_000);
    let d = dirs();
    std::fs::create_dir_all(&d.report).unwrap();
    mount(&["--bind", path_str(&d.report), path_str(&d.report)]);
    let m = Mounted(d.report.clone());
    mount(&["-o", "remount,bind,ro", path_str(&d.report)]);
    let group = format!("{topic}-g");

    let mut cmd = consume_cmd(&topic, &group, &d, true);
    let log = log_stderr(&mut cmd, d.tmp.path(), "ro");
    let status = cmd.status().expect("spawn consumer");
    let why = ["Read-only file system", path_str(&d.report)];
    assert_stopped_cleanly(status, &log, &why, &topic, &group, &d, &mut ledger);

    drop(m);
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn output_dir_removed_mid_run_is_an_error_not_a_fresh_start() {
    let mut ledger = Ledger::new("output_removed");
    let topic = unique_topic("removed");
    produce_golden(&topic, 30_000);
    let d = dirs();
    let group = format!("{topic}-g");
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let log = log_stderr(&mut cmd, d.tmp.path(), "removed");
    let mut child = ChildGuard::spawn(cmd);
    wait_until("windows to land", Duration::from_secs(60), || {
        window_file_count(&d) >= 20
    });
    std::thread::sleep(Duration::from_secs(1));

    let gone = d.tmp.path().join("report.moved-away");
    std::fs::rename(&d.report, &gone).unwrap();
    ledger.faults += 1;
    run_ok(produce_cmd(&topic, 3, 30_000, 2, sim_secs(30_000)));
    let status = wait_exit(child.child(), Duration::from_secs(60), "consumer");
    child.0 = None;
    let stderr = read_log(&log);
    assert_eq!(
        status.code(),
        Some(1),
        "expected a clean failure:\n{stderr}"
    );
    assert!(
        stderr.contains("has disappeared"),
        "unclear error:\n{stderr}"
    );
    assert!(
        !d.report.exists(),
        "the consumer recreated the report directory"
    );
    // Its commits never passed what landed in the directory it had.
    let v = verify_dirs(&brokers(), &topic, Some(&group), &gone, &d.rejects);
    assert_no_discrepancy(v, &mut ledger);

    std::fs::rename(&gone, &d.report).unwrap();
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn a_zombie_consumer_never_overwrites_or_loses() {
    let mut ledger = Ledger::new("zombie");
    let topic = unique_topic("zombie");
    run_ok(produce_cmd(&topic, 4, 40_000, 1, 0));
    let d = dirs();
    let group = format!("{topic}-g");
    // Two instances: one output, as in production, but each its own state store.
    let spawn = |instance: &str| {
        let mut cmd = consume_cmd(&topic, &group, &d, false);
        let state = d.tmp.path().join(format!("state-{instance}"));
        cmd.env("LANDFALL_INSTANCE_ID", instance)
            .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600")
            .env("LANDFALL_STATE_DIR", &state);
        let log = log_stderr(&mut cmd, d.tmp.path(), instance);
        (ChildGuard::spawn(cmd), log)
    };
    let (mut a, a_log) = spawn("a");
    wait_until("windows to land", Duration::from_secs(60), || {
        window_file_count(&d) >= 20
    });
    let a_member = wait_for_group_members(&group, "A alone", Duration::from_secs(30), |g| {
        g.stable_with(1)
    })
    .members[0]
        .clone();

    // A stops answering for longer than the session timeout (10 s); B takes over.
    send_signal(a.child(), libc::SIGSTOP);
    ledger.faults += 1;
    let landed_by_a = tree_bytes(&d.report);
    let (mut b, b_log) = spawn("b");
    run_ok(produce_cmd(&topic, 4, 40_000, 2, sim_secs(40_000)));
    wait_until(
        "B to take over and land windows",
        Duration::from_secs(90),
        || window_file_count(&d) >= landed_by_a.len() + 20,
    );
    // A's session has expired: the broker dropped it from the group, B owns every partition.
    wait_for_group_members(
        &group,
        "A's session to expire",
        Duration::from_secs(60),
        |g| g.stable_with(1) && !g.members.contains(&a_member),
    );
    send_signal(a.child(), libc::SIGCONT);
    run_ok(produce_cmd(&topic, 4, 40_000, 3, sim_secs(80_000)));
    // A really is a zombie: it finds its partitions gone when it wakes up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let evidence = loop {
        let said = read_log(&a_log);
        let lines = lost_partitions_evidence(&said);
        if !lines.is_empty() {
            break lines.join("\n");
        }
        assert!(
            Instant::now() < deadline,
            "A did not notice it had lost its partitions within 60 s of waking up:\n{}",
            strip_ansi(&said)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "A noticed it had lost its partitions:\n{}",
        strip_ansi(&evidence)
    );
    // A rejoins as a new member, and the group settles with both.
    wait_for_group_members(&group, "A to rejoin", Duration::from_secs(60), |g| {
        g.stable_with(2) && !g.members.contains(&a_member)
    });
    for (c, log, name) in [(&mut a, &a_log, "A"), (&mut b, &b_log, "B")] {
        let status = c.stop(libc::SIGTERM, Duration::from_secs(30), name, None);
        assert!(status.success(), "{name} exit {status}:\n{}", read_log(log));
    }
    // Nothing that had landed changed.
    let now = tree_bytes(&d.report);
    for (name, bytes) in &landed_by_a {
        assert!(
            now.get(name) == Some(bytes),
            "{name:?} was changed or removed"
        );
    }

    // Static members do not leave the group when they stop: their partitions wait for them
    // for the session timeout. Let both sessions expire, so the last run gets every partition.
    wait_for_group_members(
        &group,
        "both sessions to expire",
        Duration::from_secs(60),
        |g| g.members.is_empty(),
    );
    ledger.restarts += 1;
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    cmd.env("LANDFALL_INSTANCE_ID", "a")
        .env("LANDFALL_STATE_DIR", d.tmp.path().join("state-a"));
    run_ok(cmd);
    assert_same_output(&clean_run(&topic), &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}

/// The sum of the topic's partition ends: the high watermarks (everything written), or with
/// `read_committed` the last stable offsets (what a read_committed reader can reach).
fn log_end(topic: &str, read_committed: bool) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let isolation = if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    };
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("isolation.level", isolation)
        .create()
        .unwrap();
    (0..3)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"))
                .1
        })
        .sum()
}

#[test]
fn killed_and_hanging_producer_transactions_are_never_read() {
    let mut ledger = Ledger::new("producer_faults");
    let topic = unique_topic("prodfault");
    let d = dirs();
    let producer = |seed: u64, txn_id: &str, count: u64, offset_secs: i64| {
        let mut cmd = produce_cmd(&topic, 3, count, seed, offset_secs);
        cmd.env("LANDFALL_TRANSACTIONAL_ID", txn_id)
            .env("LANDFALL_RATE", "20000")
            .env("LANDFALL_TRANSACTION_TIMEOUT_MS", "10000");
        log_stderr(&mut cmd, d.tmp.path(), &format!("producer-{seed}"));
        cmd
    };
    // Killed mid-transaction; its transactional id comes back later and fences it.
    let mut p1 = ChildGuard::spawn(producer(1, &format!("{topic}-x"), 1_000_000, 0));
    std::thread::sleep(Duration::from_millis(1500));
    p1.kill9();
    // Its id comes back for a few records: that fences it and aborts its open transaction.
    run_ok(producer(4, &format!("{topic}-x"), 10, 0));
    let (stable, end) = (log_end(&topic, true), log_end(&topic, false));
    assert_eq!(
        stable, end,
        "the killed producer's transaction is still open"
    );
    // Killed inside one long transaction and never back: the transaction hangs until the
    // broker aborts it at its timeout (10 s after it began, so after this spawn). Until then,
    // read_committed readers stop at it.
    let mut cmd = producer(2, &format!("{topic}-y"), 1_000_000, 0);
    cmd.env("LANDFALL_TXN_SIZE", "1000000")
        .env("LANDFALL_TXN_MAX_MS", "600000");
    let written = log_end(&topic, false);
    let hang_started = Instant::now();
    let mut p2 = ChildGuard::spawn(cmd);
    wait_until(
        "the second producer to write into its transaction",
        Duration::from_secs(60),
        || log_end(&topic, false) >= written + 5_000,
    );
    p2.kill9();
    // The transaction really hangs: read_committed readers cannot reach the log end.
    let (stable, end) = (log_end(&topic, true), log_end(&topic, false));
    assert!(
        stable < end,
        "no open transaction: last stable offsets {stable}, ends {end}"
    );
    ledger.faults += 2;

    // A batch run stops at the hanging transaction: caught up means at the last stable offset
    // (docs/exactly-once.md), so --exit-on-idle exits while the transaction still hangs
    // instead of waiting for the broker to abort it.
    consume_to_end(&topic, &format!("{topic}-batch"), &dirs());
    let (stable, end) = (log_end(&topic, true), log_end(&topic, false));
    assert!(
        stable < end,
        "the --exit-on-idle run exited only once the hanging transaction had ended, {:?} after \
         it began",
        hang_started.elapsed()
    );

    // A streaming consumer, and records behind the hanging transaction, dated later.
    let group = format!("{topic}-g");
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let mut consumer = ChildGuard::spawn(cmd);
    let later = sim_secs(1_000_000);
    run_ok(producer(3, &format!("{topic}-x"), 20_000, later));
    let later_window = |d: &Dirs| {
        read_windows(&d.report)
            .values()
            .flat_map(|cells| cells.keys())
            .any(|(start_us, _)| *start_us >= (SIM_START_MS + (later + 120) * 1000) * 1000)
    };
    wait_until(
        "the consumer to go on past the hanging transaction",
        Duration::from_secs(90),
        || later_window(&d),
    );
    assert!(
        hang_started.elapsed() >= Duration::from_secs(10),
        "records behind the hanging transaction were read after {:?}, before its timeout",
        hang_started.elapsed()
    );
    let status = consumer.stop(libc::SIGTERM, Duration::from_secs(30), "consumer", None);
    assert!(
        status.success(),
        "consumer exit {status}:\n{}",
        read_log(&log)
    );

    let committed = read_topic(&topic, "read_committed").len();
    let everything = read_topic(&topic, "read_uncommitted").len();
    assert!(everything > committed, "no aborted records in the log");
    ledger.restarts += 1;
    consume_to_end(&topic, &group, &d);
    assert_same_output(&clean_run(&topic), &d);
    let v = assert_verified(&topic, Some(&group), &d, &mut ledger);
    assert_eq!(v.int("records") as usize, committed);
    ledger.book();
}
