use super::*;
use crate::readback::{parquet_files, read_reject_file};
use crate::store::Root;

fn config(root: &std::path::Path) -> ConsumeConfig {
    ConsumeConfig {
        kafka: KafkaSettings {
            brokers: "127.0.0.1:1".into(),
            topic: "t".into(),
            connect_timeout: Duration::from_secs(1),
            properties: Default::default(),
        },
        group: "g".into(),
        instance_id: None,
        assignment_strategy: crate::ops::kafka::AssignmentStrategy::CooperativeSticky,
        start_from: Default::default(),
        campaigns: root.join("campaigns.csv"),
        output: Root::Local(root.join("report")),
        rejects: Root::Local(root.join("rejects")),
        assume_single_writer: false,
        state_dir: root.join("state"),
        window: WindowConfig {
            size_ms: 60_000,
            lateness_ms: 60_000,
        },
        idle_timeout: Duration::from_secs(3600),
        max_future_skew_ms: i64::MAX / 4,
        max_duration_ms: 86_400_000,
        accept_campaigns_change: false,
        checkpoint_interval: Duration::from_secs(3600),
        exit_on_idle: false,
        fsync: crate::consume::sink::FsyncScope::PerFile,
        unsafe_no_durability: false,
        http_addr: None,
    }
}

/// A pipeline over `root`'s directories, with partition 0 starting at `commit`.
fn pipeline(root: &std::path::Path, store: &str, commit: Option<CommitPoint>) -> Pipeline {
    let cfg = config(root);
    for d in [&cfg.output, &cfg.rejects] {
        std::fs::create_dir_all(d.local().unwrap()).unwrap();
    }
    let table = CampaignTable::parse(
        &cfg.campaigns,
        b"network_id,campaign_id,campaign_name\n1,10,Campaign 10\n",
    )
    .unwrap();
    let store = StateStore::open(&root.join(store)).unwrap();
    let id = Pipeline::identity(&cfg, &table, Some("tid".into()));
    let mut p = Pipeline::new(cfg.clone(), Arc::new(table), store, id);
    let position = commit.as_ref().map_or(-1, |c| c.offset);
    p.parts
        .insert(0, PartitionState::fresh(0, cfg.window, commit, position));
    p
}

/// Event ending `end_secs` after the epoch, or an invalid record.
fn value(end_secs: Option<i64>) -> Vec<u8> {
    match end_secs {
        Some(e) => format!(
            r#"{{"viewId":"v","startTimestamp":"{}","endTimestamp":"{}","bannerId":1,"campaignId":10}}"#,
            crate::event::format_timestamp((e - 1) * 1000),
            crate::event::format_timestamp(e * 1000)
        )
        .into_bytes(),
        None => b"not json".to_vec(),
    }
}

/// Feeds `log[from..to]` as one batch.
fn feed(p: &mut Pipeline, log: &[Vec<u8>], from: usize, to: usize) {
    feed_with(p, log, from, to, false);
}

/// Feeds `log[from..to]` as one batch, decoded beforehand (as the poll thread does when the
/// worker is behind) when `predecoded`.
fn feed_with(p: &mut Pipeline, log: &[Vec<u8>], from: usize, to: usize, predecoded: bool) {
    let limits = p.limits();
    for (o, v) in log.iter().enumerate().take(to).skip(from) {
        let decoded = predecoded.then(|| decode_fields(Some(v), Some(0), &limits));
        p.handle(ConsumedRecord {
            partition: 0,
            offset: o as i64,
            key: None,
            value: Some(v),
            timestamp_ms: Some(0),
            decoded: decoded.as_ref(),
        })
        .unwrap();
    }
    // The end of a batch: what it closed lands (as `feed::process` does).
    p.flush().unwrap();
}

/// Reject offsets with the file each is in; fails on a reject in two files.
fn rejects(root: &std::path::Path) -> BTreeMap<i64, PathBuf> {
    let mut out = BTreeMap::new();
    let dir = Root::Local(root.join("rejects"));
    for f in parquet_files(&dir).unwrap() {
        for r in read_reject_file(&dir, &f).unwrap().rows {
            if let Some(prev) = out.insert(r.offset, f.clone()) {
                panic!(
                    "reject at {} in {} and {}",
                    r.offset,
                    prev.display(),
                    f.display()
                );
            }
        }
    }
    out
}

/// Window A has its only record before the commit point and closes after it; a reject
/// lies between. The replay has no window A, yet must cut the rejects where the first run
/// did, or the reject lands in a second file.
#[test]
fn a_replay_cuts_rejects_where_the_first_run_did() {
    let log = vec![
        value(Some(10)),  // 0: window [0, 60) opens
        value(Some(70)),  // 1: window [60, 120) opens, watermark 10 s
        value(Some(80)),  // 2
        value(None),      // 3: a reject
        value(Some(125)), // 4: watermark 65 s closes [0, 60): cut at 5
        value(Some(185)), // 5: watermark 125 s closes [60, 120)
    ];
    let clean = tempfile::tempdir().unwrap();
    let mut p = pipeline(clean.path(), "state", None);
    feed(&mut p, &log, 0, log.len());
    let want = rejects(clean.path());

    let crashy = tempfile::tempdir().unwrap();
    let mut first = pipeline(crashy.path(), "state-1", None);
    feed(&mut first, &log, 0, 5);
    let commit = first.checkpoint(None).unwrap()[0].1.clone();
    assert_eq!(commit.offset, 1, "the oldest open window starts at 1");
    drop(first); // the crash: the rest of the log is replayed from the commit
    let mut replay = pipeline(crashy.path(), "state-2", Some(commit));
    feed(&mut replay, &log, 1, log.len());
    let got = rejects(crashy.path());
    let names = |m: &BTreeMap<i64, PathBuf>| -> Vec<_> {
        m.values()
            .map(|p| p.file_name().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&got), names(&want));
}

/// Window files and their bytes, by name.
fn windows(root: &std::path::Path) -> BTreeMap<std::ffi::OsString, Vec<u8>> {
    parquet_files(&Root::Local(root.join("report")))
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_owned(),
                std::fs::read(&f).unwrap(),
            )
        })
        .collect()
}

/// Runs an idle close now, as the consumer does: plan (mark), checkpoint and commit,
/// close. Returns the commit that carries the mark.
fn idle_close(p: &mut Pipeline, wall_ms: i64) -> CommitPoint {
    let t0 = Instant::now();
    p.caught_up(0, p.parts[&0].position, t0).unwrap();
    assert!(p.plan_idle_closes(t0 + p.cfg.idle_timeout, wall_ms));
    let commit = p.checkpoint(None).unwrap()[0].1.clone();
    p.close_idle().unwrap();
    commit
}

/// An idle close lands window [0, 60) by the wall clock while [60, 120) stays open; then a
/// record of [0, 60) arrives, which is late. A crash right after the landing leaves the
/// commit from before it, at the open window. The replay must repeat the idle close from
/// the mark in that commit, or it would count the late record into [0, 60), whose file
/// already exists, and the record would land nowhere.
#[test]
fn a_replay_repeats_an_idle_close_from_its_mark() {
    let log = vec![
        value(Some(10)),  // 0: window [0, 60)
        value(Some(70)),  // 1: window [60, 120); watermark 10 s; then the partition idles
        value(Some(30)),  // 2: [0, 60) again: late after the idle close
        value(Some(190)), // 3: watermark 130 s closes [60, 120)
    ];
    let wall_ms = 130_000; // the idle close moves the watermark to 70 s
    let clean = tempfile::tempdir().unwrap();
    let mut p = pipeline(clean.path(), "state", None);
    feed(&mut p, &log, 0, 2);
    idle_close(&mut p, wall_ms);
    feed(&mut p, &log, 2, log.len());
    let (want_windows, want_rejects) = (windows(clean.path()), rejects(clean.path()));
    assert_eq!(want_windows.len(), 2);
    assert!(want_rejects.contains_key(&2), "{want_rejects:?}");

    // The crash comes right after the landing (the commit carrying the mark is the one
    // made before it) or after the commit that follows the close.
    for after_close in [false, true] {
        let crashy = tempfile::tempdir().unwrap();
        let mut first = pipeline(crashy.path(), "state-1", None);
        feed(&mut first, &log, 0, 2);
        let mut commit = idle_close(&mut first, wall_ms);
        if after_close {
            commit = first.checkpoint(None).unwrap()[0].1.clone();
        }
        let oldest_open = if after_close { 1 } else { 0 };
        assert_eq!(commit.offset, oldest_open);
        assert_eq!(
            commit.progress.idle_marks,
            vec![IdleMark {
                at_offset: 2,
                watermark_ms: 70_000
            }]
        );
        let meta = commit.metadata(first.run_identity(), None);
        assert_eq!(
            CommitPoint::parse_metadata(&meta).map(|m| m.progress),
            Some(commit.progress.clone()),
            "{meta}"
        );
        drop(first);
        let from = commit.offset as usize;
        let mut replay = pipeline(crashy.path(), "state-2", Some(commit));
        feed(&mut replay, &log, from, log.len());
        assert_eq!(
            rejects(crashy.path()).keys().collect::<Vec<_>>(),
            want_rejects.keys().collect::<Vec<_>>()
        );
        assert_eq!(windows(crashy.path()), want_windows);
    }
}

/// A record decoded by the poll thread lands exactly as one the worker decodes: the same
/// files, byte for byte, windows and rejects (malformed and late records) alike.
#[test]
fn records_decoded_beforehand_land_the_same_files() {
    let log = vec![
        value(Some(10)),
        value(None),
        value(Some(70)),
        value(Some(130)),
        value(Some(5)), // late: its window closed at 130
        value(Some(200)),
        value(Some(260)),
    ];
    let files = |predecoded: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path(), "state", None);
        feed_with(&mut p, &log, 0, log.len(), predecoded);
        let mut out = BTreeMap::new();
        for root in ["report", "rejects"] {
            for e in walkdir::WalkDir::new(dir.path().join(root)) {
                let e = e.unwrap();
                if e.file_type().is_file() {
                    let rel = e.path().strip_prefix(dir.path()).unwrap().to_owned();
                    out.insert(rel, std::fs::read(e.path()).unwrap());
                }
            }
        }
        out
    };
    let (worker, poll_thread) = (files(false), files(true));
    assert!(
        worker.keys().any(|k| k.starts_with("rejects")),
        "no reject file"
    );
    assert!(worker.len() >= 4, "too few files: {:?}", worker.keys());
    assert_eq!(
        worker.keys().collect::<Vec<_>>(),
        poll_thread.keys().collect::<Vec<_>>()
    );
    assert!(worker == poll_thread, "the files' bytes differ");
}

/// Groups sent to land in the background, one per record, land the same files as groups
/// landed and waited for; a checkpoint waits for the group in flight before it saves state.
#[test]
fn groups_landing_in_the_background_land_the_same_files() {
    let log: Vec<Vec<u8>> = (0..40).map(|i| value(Some(10 + i * 45))).collect();
    let waited = tempfile::tempdir().unwrap();
    let mut p = pipeline(waited.path(), "state", None);
    for i in 0..log.len() {
        feed(&mut p, &log, i, i + 1);
    }
    let sent = tempfile::tempdir().unwrap();
    let mut q = pipeline(sent.path(), "state", None);
    for i in 0..log.len() {
        feed_record(&mut q, &log, i);
        q.end_batch(true).unwrap();
    }
    let points = q.checkpoint(None).unwrap();
    assert_eq!(points[0].1.offset, p.checkpoint(None).unwrap()[0].1.offset);
    assert_eq!(q.totals().windows_landed, p.totals().windows_landed);
    assert!(q.totals().windows_landed >= 20, "{:?}", q.totals());
    assert!(
        windows(sent.path()) == windows(waited.path()),
        "the files differ"
    );
}

/// A group that fails on its landing thread (a foreign file under one of its names) is
/// reported at the next checkpoint, which saves and commits nothing, nor does any after it.
#[test]
fn a_group_that_fails_in_the_background_stops_the_next_checkpoint() {
    let log: Vec<Vec<u8>> = (0..6).map(|i| value(Some(10 + i * 60))).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut p = pipeline(dir.path(), "state", None);
    let foreign = dir
        .path()
        .join("report")
        .join(crate::consume::sink::window_file_name("t", 0, 60_000));
    std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
    std::fs::write(&foreign, b"not parquet").unwrap();
    for i in 0..log.len() {
        feed_record(&mut p, &log, i);
    }
    p.end_batch(true).unwrap();
    let err = p.checkpoint(None).unwrap_err();
    assert!(
        matches!(&err, PipelineError::Sink(SinkError::Unreadable { path, .. }) if *path == foreign),
        "{err}"
    );
    assert!(p.checkpoint(None).unwrap().is_empty());
}

/// Hands `log[i]` to the pipeline, as one record of a batch.
fn feed_record(p: &mut Pipeline, log: &[Vec<u8>], i: usize) {
    p.handle(ConsumedRecord {
        partition: 0,
        offset: i as i64,
        key: None,
        value: Some(&log[i]),
        timestamp_ms: Some(0),
        decoded: None,
    })
    .unwrap();
}
