//! Identity at the edges (invariant I7): everything the output depends on is recorded and
//! checked. A topic deleted and created again, a file found "already there" that is not this
//! run's output, and a campaign table edited between runs are each a clear error that names
//! what changed, never a silent mix; the way out each error names then works, with `verify`
//! as the judge.
//!
//! Needs the `failpoints` feature (`scripts/test` enables it).

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use rdkafka::ClientConfig;
use support::harness::*;
use support::output::*;
use support::*;

/// The topic's ID as the broker gives it now.
fn topic_id(topic: &str) -> String {
    let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    match landfall::ops::kafka::topic_id(client.client(), topic, Duration::from_secs(10)) {
        landfall::ops::kafka::TopicIdLookup::Found(id) => id,
        other => panic!("no topic ID for {topic}: {other:?}"),
    }
}

/// Deletes the topic and waits until the broker no longer knows it.
fn delete_topic(topic: &str) {
    let r = block_on(admin().delete_topics(&[topic], &AdminOptions::new())).unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "deleting {topic}: {r:?}");
    wait_until("the topic to be gone", Duration::from_secs(30), || {
        !topic_exists(topic)
    });
}

/// Runs a command to its end and returns its exit status and stderr.
fn run_logged(mut cmd: std::process::Command, dir: &Path, name: &str) -> (Option<i32>, String) {
    let log = log_stderr(&mut cmd, dir, name);
    let mut child = ChildGuard::spawn(cmd);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.child().try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not exit within 90 s; its log:\n{}",
            strip_ansi(&read_log(&log))
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.0 = None;
    (status.code(), strip_ansi(&read_log(&log)))
}

fn assert_refused(code: Option<i32>, stderr: &str, says: &[&str]) {
    assert_eq!(code, Some(1), "expected a refusal (exit 1):\n{stderr}");
    for s in says {
        assert!(
            stderr.contains(s),
            "the error does not say {s:?}:\n{stderr}"
        );
    }
}

/// The topic is deleted and created again (same name, new records) while the consumer is
/// stopped. The restart must refuse, naming the topic, rather than report the old topic's
/// files as "already there" (before: exit 0, "0 window files landed (N already there)", and
/// none of the new topic's records in the output). `verify` of the old output against the
/// new topic reports the old files by topic ID. The way out the error names (a new group and
/// new output directories) then works, and verify is clean.
#[test]
fn a_topic_recreated_while_stopped_is_refused_by_its_id() {
    let mut ledger = Ledger::new("edge_recreated");
    let topic = unique_topic("recreated");
    let d = dirs();
    let group = format!("{topic}-g");
    run_ok(produce_cmd(&topic, 3, 6_000, 1, 0));
    consume_to_end(&topic, &group, &d);
    let old_id = topic_id(&topic);
    let landed = tree_bytes(&d.report);
    assert!(!landed.is_empty());

    delete_topic(&topic);
    run_ok(produce_cmd(&topic, 3, 6_000, 2, 0));
    let new_id = topic_id(&topic);
    assert_ne!(old_id, new_id, "the recreated topic has a new ID");
    ledger.faults += 1;

    ledger.restarts += 1;
    let (code, said) = run_logged(
        consume_cmd(&topic, &group, &d, true),
        d.tmp.path(),
        "restart",
    );
    assert_refused(
        code,
        &said,
        &["deleted and created again", &topic, "--output-dir", &new_id],
    );
    assert_eq!(tree_bytes(&d.report), landed, "no landed file changed");

    let v = verify(&topic, None, &d);
    ledger.verify_runs += 1;
    assert_eq!(v.exit, Some(1), "{}", v.report);
    assert_eq!(
        v.kinds.get("topic_id_mismatch").copied(),
        Some(landed.len() + parquet_files(&d.rejects).len()),
        "every old window and reject file is reported by its topic ID: {:?}",
        v.kinds
    );

    // The way out: a new group and new output directories.
    let fresh = dirs();
    let fresh_group = format!("{topic}-new");
    consume_to_end(&topic, &fresh_group, &fresh);
    assert_verified(&topic, Some(&fresh_group), &fresh, &mut ledger);
    ledger.book();
}

/// The topic is deleted and created again under a running consumer, and the new topic gets
/// records. The consumer must stop with an error that says so, not blame retention (before:
/// "the committed offset is no longer in the log ... deleted by retention"), and leave every
/// landed file as it was.
#[test]
fn a_topic_recreated_under_a_running_consumer_stops_it() {
    let mut ledger = Ledger::new("edge_recreated_live");
    let topic = unique_topic("recreated-live");
    let d = dirs();
    let group = format!("{topic}-g");
    run_ok(produce_cmd(&topic, 3, 6_000, 1, 0));
    let mut cmd = consume_cmd(&topic, &group, &d, false);
    cmd.env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let log = log_stderr(&mut cmd, d.tmp.path(), "running");
    let mut child = ChildGuard::spawn(cmd);
    wait_until("windows to land", Duration::from_secs(60), || {
        window_file_count(&d) >= 5
    });
    let landed = tree_bytes(&d.report);

    delete_topic(&topic);
    run_ok(produce_cmd(&topic, 3, 12_000, 2, 0));
    ledger.faults += 1;
    let t0 = Instant::now();
    let status = wait_exit(child.child(), Duration::from_secs(60), "consumer");
    child.0 = None;
    let said = strip_ansi(&read_log(&log));
    assert_refused(status.code(), &said, &["deleted and created again", &topic]);
    assert!(
        !said.contains("deleted by retention"),
        "the error blames retention:\n{said}"
    );
    eprintln!("stopped {:?} after the new topic's records", t0.elapsed());
    let now = tree_bytes(&d.report);
    for (name, bytes) in &landed {
        assert_eq!(now.get(name), Some(bytes), "{name:?} changed");
    }
    // Nothing of the new topic landed under the old topic's identity.
    let v = verify(&topic, None, &d);
    ledger.verify_runs += 1;
    let files = now.len() + parquet_files(&d.rejects).len();
    assert_eq!(
        v.kinds.get("topic_id_mismatch").copied(),
        Some(files),
        "every window and reject file is reported by its topic ID: {:?}",
        v.kinds
    );

    let fresh = dirs();
    let fresh_group = format!("{topic}-new");
    consume_to_end(&topic, &fresh_group, &fresh);
    assert_verified(&topic, Some(&fresh_group), &fresh, &mut ledger);
    ledger.book();
}

/// Landed files under the report directory, relative to it.
fn window_files(d: &Dirs) -> Vec<PathBuf> {
    parquet_files(&d.report)
}

/// A file found under an expected name is used only if its footer proves it is this run's
/// output. Three ways it is not, each of which exited 0 with wrong or missing windows before:
/// a zero-byte file; a file of a group with another --window-secs sharing the directory; and
/// a file landed just before a crash (before the first commit) by a run with other settings.
#[test]
fn a_file_already_there_must_prove_it_is_this_output() {
    let mut ledger = Ledger::new("edge_already_there");
    let topic = unique_topic("already");
    run_ok(produce_cmd(&topic, 3, 9_000, 1, 0));
    let clean = clean_run(&topic);
    let names = window_files(&clean);

    // 1. A zero-byte file at an expected name.
    let d = dirs();
    let empty = d.report.join(&names[names.len() / 2]);
    std::fs::create_dir_all(empty.parent().unwrap()).unwrap();
    std::fs::write(&empty, b"").unwrap();
    let group = format!("{topic}-empty");
    let (code, said) = run_logged(consume_cmd(&topic, &group, &d, true), d.tmp.path(), "empty");
    ledger.faults += 1;
    assert_refused(
        code,
        &said,
        &[path_str(&empty), "not a readable Parquet file"],
    );
    assert_eq!(
        std::fs::metadata(&empty).unwrap().len(),
        0,
        "left as it was"
    );
    std::fs::remove_file(&empty).unwrap();
    ledger.restarts += 1;
    consume_to_end(&topic, &group, &d);
    assert_same_output(&clean, &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);

    // 2. Two groups with different --window-secs sharing one output directory.
    let group30 = format!("{topic}-w30");
    let mut cmd = consume_cmd(&topic, &group30, &d, true);
    cmd.args(["--window-secs", "30"]);
    let before = tree_bytes(&d.report);
    let (code, said) = run_logged(cmd, d.tmp.path(), "w30");
    ledger.faults += 1;
    assert_refused(
        code,
        &said,
        &["window settings", "w60000", "w30000", "_landfall."],
    );
    assert_eq!(tree_bytes(&d.report), before, "no landed file changed");

    // 3. A crash right after the first landing, before the first commit; the restart comes
    //    with other window settings.
    let c = dirs();
    let group = format!("{topic}-crash");
    let mut cmd = consume_cmd(&topic, &group, &c, true);
    cmd.env("LANDFALL_FAILPOINT", "after-dir-fsync:1");
    let (code, said) = run_logged(cmd, c.tmp.path(), "crash");
    assert_eq!(code, None, "the first run dies at the failpoint:\n{said}");
    ledger.faults += 1;
    ledger.kills += 1;
    let mut cmd = consume_cmd(&topic, &group, &c, true);
    cmd.args(["--window-secs", "30", "--allowed-lateness-secs", "30"]);
    ledger.restarts += 1;
    let (code, said) = run_logged(cmd, c.tmp.path(), "other-settings");
    assert_refused(code, &said, &["window settings", "--window-secs"]);
    // With the settings restored, the restart finishes as if nothing had happened.
    ledger.restarts += 1;
    consume_to_end(&topic, &group, &c);
    assert_same_output(&clean, &c);
    assert_verified(&topic, Some(&group), &c, &mut ledger);
    ledger.book();
}

fn sha256_hex(path: &Path) -> String {
    landfall::consume::enrich::CampaignTable::load(path)
        .unwrap()
        .checksum
}

/// Every window file's footer entry `key`, by file.
fn footer_values(d: &Dirs, key: &str) -> Vec<Option<String>> {
    window_files(d)
        .iter()
        .map(|f| {
            landfall::readback::read_footer(
                &landfall::store::Root::Local(d.report.clone()),
                &d.report.join(f),
            )
            .unwrap()
            .get(key)
            .map(str::to_string)
        })
        .collect()
}

/// The campaign table is edited between a crash and the restart (campaign 40 moves from
/// network 2 to network 3). Before, the restart went on silently, and a window's campaign sat
/// in two networks across its partition files. Now the restart refuses, naming the file and
/// both checksums; with --accept-campaigns-change it applies the new table to what lands from
/// then on, keeps the files landed with the old one, and records the change in the footers,
/// and verify (which reports mixed tables otherwise) is clean.
#[test]
fn a_changed_campaign_table_is_refused_unless_the_change_is_accepted() {
    let mut ledger = Ledger::new("edge_campaign_table");
    let topic = unique_topic("table");
    run_ok(produce_cmd(&topic, 3, 6_000, 1, 0));
    let d = dirs();
    let group = format!("{topic}-g");
    let table = d.tmp.path().join("campaigns.csv");
    std::fs::copy(campaigns(), &table).unwrap();
    let with_table = |cmd: &mut std::process::Command| {
        cmd.env("LANDFALL_CAMPAIGNS", &table);
    };
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    with_table(&mut cmd);
    cmd.env("LANDFALL_FAILPOINT", "after-kafka-commit:1")
        .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let (code, said) = run_logged(cmd, d.tmp.path(), "first");
    assert_eq!(
        code, None,
        "the first run dies at its first commit:\n{said}"
    );
    ledger.faults += 1;
    ledger.kills += 1;
    assert!(window_file_count(&d) > 0, "windows landed before the crash");
    let old_sha = sha256_hex(&table);
    // More records, later in event time, while the consumer is down.
    run_ok(produce_cmd(&topic, 3, 6_000, 2, sim_secs(6_000)));

    let text = std::fs::read_to_string(&table).unwrap();
    let edited = text.replace("2,40,", "3,40,");
    assert_ne!(text, edited, "the table has campaign 40 in network 2");
    std::fs::write(&table, edited).unwrap();
    let new_sha = sha256_hex(&table);
    let landed = tree_bytes(&d.report);

    let mut cmd = consume_cmd(&topic, &group, &d, true);
    with_table(&mut cmd);
    ledger.restarts += 1;
    let (code, said) = run_logged(cmd, d.tmp.path(), "changed");
    assert_refused(
        code,
        &said,
        &[
            path_str(&table),
            &old_sha,
            &new_sha,
            "--accept-campaigns-change",
        ],
    );
    assert_eq!(tree_bytes(&d.report), landed, "nothing landed");

    let mut cmd = consume_cmd(&topic, &group, &d, true);
    with_table(&mut cmd);
    cmd.arg("--accept-campaigns-change");
    ledger.restarts += 1;
    let (code, said) = run_logged(cmd, d.tmp.path(), "accepted");
    assert_eq!(code, Some(0), "{said}");
    let now = tree_bytes(&d.report);
    for (name, bytes) in &landed {
        assert_eq!(now.get(name), Some(bytes), "{name:?} changed");
    }
    let tables = footer_values(&d, "campaigns_sha256");
    let count = |sha: &str| tables.iter().filter(|t| t.as_deref() == Some(sha)).count();
    assert_eq!(
        count(&old_sha),
        landed.len(),
        "the old files keep the old table"
    );
    assert_eq!(
        count(&new_sha),
        now.len() - landed.len(),
        "new files use the new table"
    );
    assert!(count(&new_sha) > 0);
    let replaced = footer_values(&d, "campaigns_replaced_sha256");
    assert!(
        replaced
            .iter()
            .any(|r| r.as_deref() == Some(old_sha.as_str())),
        "the change is recorded in the footers of what landed after it"
    );
    let v = assert_verified(&topic, Some(&group), &d, &mut ledger);
    eprintln!(
        "windows across the change: {}",
        v.report["windows_across_table_change"]
    );
    // A later restart needs no flag: the commits name the new table.
    ledger.restarts += 1;
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    with_table(&mut cmd);
    let (code, said) = run_logged(cmd, d.tmp.path(), "after");
    assert_eq!(code, Some(0), "{said}");
    ledger.book();
}
