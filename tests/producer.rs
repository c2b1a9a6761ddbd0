//! `landfall produce` against the real local Kafka broker.

mod support;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use landfall::config::produce_config;
use landfall::produce::producer::TxnPlan;
use support::*;

/// The keys a producer run commits, computed from the same plan the producer follows.
fn planned_committed_keys(args: &[&str], count: usize, txn_size: usize) -> Vec<Vec<u8>> {
    use clap::Parser;
    let mut argv = vec!["landfall", "produce"];
    argv.extend_from_slice(args);
    let cli = landfall::cli::Cli::parse_from(argv);
    let landfall::cli::Command::Produce(p) = cli.command else {
        unreachable!()
    };
    let (cfg, _) = produce_config(&p).unwrap();
    let mut plan = TxnPlan::new(&cfg);
    let mut keys = Vec::new();
    let mut made = 0;
    while made < count {
        let batch = plan.next_batch(txn_size.min(count - made));
        made += batch.records.len();
        if !batch.abort {
            keys.extend(batch.records.into_iter().map(|r| r.key));
        }
    }
    keys
}

#[test]
fn read_committed_sees_exactly_the_committed_transactions() {
    let topic = unique_topic("aborts");
    let args = [
        "--topic",
        &topic,
        "--create-topic",
        "--partitions",
        "3",
        "--count",
        "10000",
        "--txn-size",
        "100",
        "--abort-fraction",
        "0.3",
        "--seed",
        "11",
        "--clock",
        "simulated",
    ];
    let mut cmd = landfall(&["produce"]);
    cmd.args(args);
    let out = run_ok(cmd);
    let summary = String::from_utf8_lossy(&out.stdout);

    let expected = planned_committed_keys(&args, 10_000, 100);
    // 30% of 100 transactions: the seeded plan aborts a definite number of them.
    assert!(
        (5_000..=9_000).contains(&expected.len()),
        "plan commits {} records",
        expected.len()
    );
    assert!(
        summary.contains(&format!("committed {} records", expected.len())),
        "summary does not match the plan: {summary}"
    );

    let committed = read_topic(&topic, "read_committed");
    assert_eq!(committed.len(), expected.len());
    let got: HashSet<Vec<u8>> = committed.iter().map(|r| r.key.clone().unwrap()).collect();
    let want: HashSet<Vec<u8>> = expected.into_iter().collect();
    assert_eq!(got.len(), committed.len(), "duplicate keys read");
    assert_eq!(got, want);

    let uncommitted = read_topic(&topic, "read_uncommitted");
    assert_eq!(
        uncommitted.len(),
        10_000,
        "read_uncommitted sees aborted records too"
    );
}

#[test]
fn same_seed_and_simulated_clock_write_identical_bytes() {
    let read = |topic: &str| {
        let mut cmd = landfall(&["produce"]);
        cmd.args([
            "--topic",
            topic,
            "--create-topic",
            "--count",
            "3000",
            "--txn-size",
            "500",
            "--seed",
            "99",
            "--clock",
            "simulated",
            "--out-of-order-secs",
            "20",
            "--late-fraction",
            "0.05",
            "--invalid-fraction",
            "0.05",
            "--unknown-campaign-fraction",
            "0.05",
            "--transactional-id",
            topic,
        ]);
        run_ok(cmd);
        read_topic(topic, "read_committed")
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp_ms))
            .collect::<Vec<_>>()
    };
    let a = read(&unique_topic("determinism-a"));
    let b = read(&unique_topic("determinism-b"));
    assert_eq!(a.len(), 3000);
    assert!(a == b, "two seeded runs wrote different records");
}

#[test]
fn a_producer_killed_mid_transaction_is_fenced_on_restart() {
    let topic = unique_topic("crash");
    let txn_id = format!("{topic}-txn");
    // 1,000 records per transaction at 1,000 records/s: each transaction is open for a second.
    let first_args = [
        "--topic",
        &topic,
        "--count",
        "0",
        "--rate",
        "1000",
        "--txn-size",
        "1000",
        "--txn-max-ms",
        "600000",
        "--seed",
        "5",
        "--clock",
        "simulated",
        "--transactional-id",
        &txn_id,
    ];
    let mut cmd = landfall(&["produce", "--create-topic"]);
    cmd.args(first_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = ChildGuard::spawn(cmd);
    // Wait until the first transaction has committed and the third is under way.
    let t0 = Instant::now();
    wait_until(
        "records of an open transaction",
        Duration::from_secs(30),
        || topic_exists(&topic) && read_topic(&topic, "read_uncommitted").len() >= 2_300,
    );
    child.kill9();
    assert!(t0.elapsed() < Duration::from_secs(30));

    let before_restart = read_topic(&topic, "read_uncommitted").len();
    let mut restart = landfall(&["produce"]);
    restart.args([
        "--topic",
        &topic,
        "--count",
        "500",
        "--txn-size",
        "500",
        "--seed",
        "6",
        "--clock",
        "simulated",
        "--transactional-id",
        &txn_id,
    ]);
    run_ok(restart);

    let committed = read_topic(&topic, "read_committed");
    let first_run_keys = planned_committed_keys(&first_args, 20_000, 1000);
    let second_run_keys = planned_committed_keys(
        &["--seed", "6", "--clock", "simulated", "--txn-size", "500"],
        500,
        500,
    );
    let got: Vec<Vec<u8>> = committed.iter().map(|r| r.key.clone().unwrap()).collect();
    let second: HashSet<&Vec<u8>> = second_run_keys.iter().collect();
    let from_first: Vec<&Vec<u8>> = got.iter().filter(|k| !second.contains(k)).collect();
    let from_second = got.len() - from_first.len();
    assert_eq!(
        from_second, 500,
        "the restarted producer's records are all visible"
    );
    assert!(
        !from_first.is_empty() && from_first.len() % 1000 == 0,
        "the killed producer's visible records are whole transactions: {}",
        from_first.len()
    );
    let want: HashSet<&Vec<u8>> = first_run_keys[..from_first.len()].iter().collect();
    let have: HashSet<&Vec<u8>> = from_first.iter().copied().collect();
    assert_eq!(
        have, want,
        "the visible records are the first whole transactions"
    );
    assert!(
        before_restart > from_first.len(),
        "the killed transaction had written records ({before_restart} uncommitted vs {} committed)",
        from_first.len()
    );
}

fn assert_fails_fast(args: &[&str], exit: i32, must_mention: &str) {
    let t0 = Instant::now();
    let out = landfall(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(exit),
        "exit code for {args:?}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains(must_mention),
        "stderr for {args:?} should mention {must_mention:?}:\n{stderr}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn bad_configuration_is_named_and_fails_fast() {
    assert_fails_fast(&["produce", "--no-such-flag"], 2, "--no-such-flag");
    assert_fails_fast(
        &["produce", "--rate", "-5"],
        2,
        "--rate (LANDFALL_RATE) = -5",
    );
    assert_fails_fast(
        &["produce", "--abort-fraction", "1.5", "--txn-size", "0"],
        2,
        "--txn-size (LANDFALL_TXN_SIZE) = 0",
    );
    assert_fails_fast(
        &[
            "produce",
            "--brokers",
            "127.0.0.1:1",
            "--connect-timeout-secs",
            "3",
            "--count",
            "1",
        ],
        3,
        "could not reach Kafka at 127.0.0.1:1",
    );
}

#[test]
fn parallel_producers_commit_exactly_what_they_report() {
    let topic = unique_topic("parallel");
    let mut cmd = landfall(&["produce"]);
    cmd.args([
        "--topic",
        &topic,
        "--create-topic",
        "--partitions",
        "4",
        "--count",
        "30001",
        "--txn-size",
        "500",
        "--abort-fraction",
        "0.25",
        "--producers",
        "3",
        "--seed",
        "21",
        "--clock",
        "simulated",
        "--transactional-id",
        &topic,
    ]);
    let out = run_ok(cmd);
    let summary = String::from_utf8_lossy(&out.stdout);
    let committed: usize = summary
        .split("committed ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary: {summary}"));
    assert!(summary.starts_with("produced 30001 records"), "{summary}");
    let seen = read_topic(&topic, "read_committed");
    assert_eq!(seen.len(), committed, "{summary}");
    let keys: HashSet<_> = seen.iter().map(|r| r.key.clone()).collect();
    assert_eq!(keys.len(), committed, "duplicate keys across producers");
    let everything = read_topic(&topic, "read_uncommitted").len();
    assert!(
        everything > committed,
        "no aborted transactions in {everything} records"
    );
}

/// A value of the wrong kind (`--clock fake`, a rate that is not a number, also from the
/// environment) is reported with every other problem, in the same form: flag, variable,
/// value, why. (Before: clap printed the first one alone, in its own format, without the
/// variable, and nothing else was checked.)
#[test]
fn values_of_the_wrong_kind_are_reported_with_every_other_problem() {
    let out = landfall(&[
        "produce",
        "--clock",
        "fake",
        "--rate",
        "fast",
        "--txn-size",
        "0",
    ])
    .env("LANDFALL_SIM_EVENTS_PER_SEC", "many")
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    for s in [
        "--clock (LANDFALL_CLOCK) = fake: expected one of real, simulated",
        "--rate (LANDFALL_RATE) = fast: ",
        "--sim-events-per-sec (LANDFALL_SIM_EVENTS_PER_SEC) = many: ",
        "--txn-size (LANDFALL_TXN_SIZE) = 0: must be between 1 and 1000000",
    ] {
        assert!(said.contains(s), "no {s:?} in:\n{said}");
    }
}
