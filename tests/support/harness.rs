//! The restart harness: seeded topics, the consumer as a child process, `landfall verify` as
//! the judge, and the fault ledger that `scripts/test` summarises.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use super::output::{read_rejects, tree_bytes};
use super::*;

pub const WINDOW_MS: i64 = 60_000;
pub const LATENESS_MS: i64 = 60_000;
pub const SKEW_MS: i64 = 300_000;

/// The seeded simulated clock starts here; 20 events per simulated second.
pub const SIM_START_MS: i64 = 1_726_210_140_000; // 2024-09-13T06:49:00Z
pub const SIM_EVENTS_PER_SEC: u64 = 20;

/// A `landfall produce` with the golden knobs: every kind of awkward record and 20% aborted
/// transactions, on a simulated clock that starts `offset_secs` after `SIM_START_MS` and runs
/// at `SIM_EVENTS_PER_SEC` (`LANDFALL_SIM_EVENTS_PER_SEC` overrides it).
pub fn produce_cmd(
    topic: &str,
    partitions: u32,
    count: u64,
    seed: u64,
    offset_secs: i64,
) -> Command {
    let start = chrono::DateTime::from_timestamp_millis(SIM_START_MS + offset_secs * 1000)
        .unwrap()
        .to_rfc3339();
    let mut cmd = landfall(&["produce"]);
    cmd.args([
        "--topic",
        topic,
        "--create-topic",
        "--partitions",
        &partitions.to_string(),
        "--count",
        &count.to_string(),
        "--seed",
        &seed.to_string(),
        "--clock",
        "simulated",
        "--sim-start",
        &start,
        "--out-of-order-secs",
        "30",
        "--late-fraction",
        "0.01",
        "--invalid-fraction",
        "0.01",
        "--unknown-campaign-fraction",
        "0.01",
    ]);
    // Through the environment, so a test can override them with `.env(..)`.
    cmd.env("LANDFALL_TRANSACTIONAL_ID", topic)
        .env("LANDFALL_ABORT_FRACTION", "0.2")
        .env("LANDFALL_TXN_SIZE", "1000")
        .env(
            "LANDFALL_SIM_EVENTS_PER_SEC",
            SIM_EVENTS_PER_SEC.to_string(),
        );
    cmd
}

/// Produces `count` golden records on 3 partitions.
pub fn produce_golden(topic: &str, count: u64) {
    run_ok(produce_cmd(topic, 3, count, 2024, 0));
}

pub struct Dirs {
    pub tmp: tempfile::TempDir,
    pub report: PathBuf,
    pub rejects: PathBuf,
    pub state: PathBuf,
}

/// A failed test keeps its directory (output, state, logs) for a look afterwards, and says
/// where it is.
impl Drop for Dirs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.tmp.disable_cleanup(true);
            eprintln!(
                "kept the failed test's directory: {}",
                self.tmp.path().display()
            );
        }
    }
}

pub fn dirs() -> Dirs {
    let tmp = scratch();
    let root = tmp.path().to_path_buf();
    Dirs {
        report: root.join("report"),
        rejects: root.join("rejects"),
        state: root.join("state"),
        tmp,
    }
}

pub fn campaigns() -> PathBuf {
    repo_root().join("data/campaigns_dict/campaigns.csv")
}

/// `landfall consume` for `group`, into `d`. Timing settings come from the environment, so a
/// test can change them with `.env(..)`: idle timeout 2 s, checkpoints every 300 ms, static
/// membership with the group's name as the instance id, the state directory and the campaign
/// table.
pub fn consume_cmd(topic: &str, group: &str, d: &Dirs, exit_on_idle: bool) -> Command {
    let mut cmd = landfall(&["consume"]);
    cmd.args([
        "--topic",
        topic,
        "--group",
        group,
        "--output-dir",
        path_str(&d.report),
        "--rejects-dir",
        path_str(&d.rejects),
    ])
    .env("LANDFALL_STATE_DIR", &d.state)
    .env("LANDFALL_CAMPAIGNS", campaigns())
    .env("LANDFALL_INSTANCE_ID", group)
    .env("LANDFALL_IDLE_TIMEOUT_SECS", "2")
    .env("LANDFALL_CHECKPOINT_INTERVAL_MS", "300");
    if exit_on_idle {
        cmd.arg("--exit-on-idle");
    }
    cmd
}

pub fn consume_to_end(topic: &str, group: &str, d: &Dirs) {
    let mut cmd = consume_cmd(topic, group, d, true);
    cmd.env("LANDFALL_LOG", "info");
    let out = run_ok(cmd);
    // Kept with the directory when the test fails: what the last run did, idle closes included.
    let log = d.tmp.path().join("consume-to-end.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        use std::io::Write;
        let _ = f.write_all(&out.stderr);
    }
}

/// Simulated seconds covered by `n` golden records.
pub fn sim_secs(n: u64) -> i64 {
    (n / SIM_EVENTS_PER_SEC) as i64
}

/// The reference: one uninterrupted consumer, in a group of its own, over the whole topic.
pub fn clean_run(topic: &str) -> Dirs {
    let clean = dirs();
    consume_to_end(topic, &format!("{topic}-clean"), &clean);
    clean
}

pub fn window_file_count(d: &Dirs) -> usize {
    super::output::parquet_files(&d.report).len()
}

/// What `landfall verify --format json` reported.
#[derive(Debug)]
pub struct Verdict {
    pub exit: Option<i32>,
    pub report: serde_json::Value,
    /// Discrepancy kind -> how many.
    pub kinds: BTreeMap<String, usize>,
    pub stderr: String,
}

impl Verdict {
    pub fn discrepancies(&self) -> usize {
        self.kinds.values().sum()
    }
    pub fn int(&self, key: &str) -> u64 {
        self.report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("verify report has no {key}: {}", self.report))
    }
}

/// Runs `landfall verify` on `d` (with the group's committed offsets when `group` is given).
pub fn verify(topic: &str, group: Option<&str>, d: &Dirs) -> Verdict {
    verify_dirs(&brokers(), topic, group, &d.report, &d.rejects)
}

pub fn verify_dirs(
    brokers: &str,
    topic: &str,
    group: Option<&str>,
    report: &Path,
    rejects: &Path,
) -> Verdict {
    verify_with(brokers, None, topic, group, report, rejects)
}

/// `verify_dirs`, through a librdkafka property file (`--kafka-config-file`) when one is given.
pub fn verify_with(
    brokers: &str,
    kafka_config: Option<&Path>,
    topic: &str,
    group: Option<&str>,
    report: &Path,
    rejects: &Path,
) -> Verdict {
    verdict_of(verify_cmd(
        brokers,
        kafka_config,
        topic,
        group,
        report,
        rejects,
    ))
}

/// The `landfall verify --format json` command that `verify_with` runs.
pub fn verify_cmd(
    brokers: &str,
    kafka_config: Option<&Path>,
    topic: &str,
    group: Option<&str>,
    report: &Path,
    rejects: &Path,
) -> Command {
    let mut cmd = landfall(&["verify", "--format", "json", "--topic", topic]);
    cmd.env("LANDFALL_BROKERS", brokers);
    if let Some(file) = kafka_config {
        cmd.env("LANDFALL_KAFKA_CONFIG_FILE", file);
    }
    cmd.args([
        "--output-dir",
        path_str(report),
        "--rejects-dir",
        path_str(rejects),
    ]);
    if let Some(g) = group {
        cmd.args(["--group", g]);
    }
    cmd
}

/// Runs a `landfall verify --format json` command and reads its report.
pub fn verdict_of(mut cmd: Command) -> Verdict {
    let out = cmd.output().expect("run landfall verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON report ({e}, exit {:?}):\n{stdout}\n{stderr}",
            out.status
        )
    });
    let mut kinds = BTreeMap::new();
    for d in report["discrepancies"]
        .as_array()
        .expect("discrepancies array")
    {
        *kinds
            .entry(d["kind"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Verdict {
        exit: out.status.code(),
        report,
        kinds,
        stderr,
    }
}

/// Asserts that `verify` finds nothing wrong and nothing pending, and books the run.
pub fn assert_verified(topic: &str, group: Option<&str>, d: &Dirs, ledger: &mut Ledger) -> Verdict {
    let v = assert_no_discrepancy(verify(topic, group, d), ledger);
    assert_eq!(
        v.int("pending_records"),
        0,
        "records not landed yet: {}",
        v.report
    );
    v
}

/// Asserts that a verdict found nothing wrong (records may still be pending: not landed and
/// not committed), and books the run.
pub fn assert_no_discrepancy(v: Verdict, ledger: &mut Ledger) -> Verdict {
    ledger.verify_runs += 1;
    ledger.discrepancies += v.discrepancies() as u64;
    assert!(
        v.exit == Some(0) && v.discrepancies() == 0,
        "verify found {} discrepancies (exit {:?}), {:?}; the first: {}",
        v.discrepancies(),
        v.exit,
        v.kinds,
        serde_json::to_string_pretty(
            &v.report["discrepancies"]
                .as_array()
                .map(|a| &a[..a.len().min(5)])
        )
        .unwrap()
    );
    ledger.events = ledger.events.max(v.int("records"));
    v
}

/// Asserts that two runs landed the same window files, byte for byte, and the same rejects.
pub fn assert_same_output(want: &Dirs, got: &Dirs) {
    let (w, g) = (tree_bytes(&want.report), tree_bytes(&got.report));
    let missing: Vec<_> = w.keys().filter(|k| !g.contains_key(*k)).take(5).collect();
    let extra: Vec<_> = g.keys().filter(|k| !w.contains_key(*k)).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the set of window files differs from the uninterrupted run ({} vs {} files); missing \
         (first 5): {missing:?}; extra (first 5): {extra:?}",
        g.len(),
        w.len()
    );
    for (name, bytes) in &w {
        assert!(
            g[name] == *bytes,
            "{name:?} differs from the uninterrupted run"
        );
    }
    assert_eq!(
        read_rejects(&got.rejects),
        read_rejects(&want.rejects),
        "rejects differ from the uninterrupted run"
    );
}

/// One line per test in the fault ledger (`LANDFALL_FAULT_LEDGER`), which `scripts/test` turns
/// into the summary table and checks: every recovery test ran `verify`, and it found nothing.
#[derive(Debug, Default)]
pub struct Ledger {
    pub test: &'static str,
    pub faults: u64,
    pub events: u64,
    pub kills: u64,
    pub restarts: u64,
    pub verify_runs: u64,
    pub discrepancies: u64,
    started: Option<Instant>,
}

impl Ledger {
    pub fn new(test: &'static str) -> Self {
        Ledger {
            test,
            started: Some(Instant::now()),
            ..Default::default()
        }
    }

    /// Appends this test's line. Called at the end of a test that passed.
    pub fn book(&self) {
        let line = serde_json::json!({
            "test": self.test,
            "faults": self.faults,
            "events": self.events,
            "kills": self.kills,
            "restarts": self.restarts,
            "verify_runs": self.verify_runs,
            "discrepancies": self.discrepancies,
            "secs": self.started.map_or(0.0, |s| s.elapsed().as_secs_f64()),
        });
        eprintln!("fault ledger: {line}");
        if let Ok(path) = std::env::var("LANDFALL_FAULT_LEDGER") {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap_or_else(|e| panic!("opening the fault ledger {path}: {e}"));
            writeln!(f, "{line}").unwrap();
        }
    }
}

/// The consumer stopped with exit 1 and an error saying every part of `why`, and committed
/// nothing past what it could not write: `verify` finds no discrepancy, and some records are
/// still pending.
pub fn assert_stopped_cleanly(
    status: ExitStatus,
    log: &Path,
    why: &[&str],
    topic: &str,
    group: &str,
    d: &Dirs,
    ledger: &mut Ledger,
) {
    let stderr = read_log(log);
    ledger.faults += 1;
    assert_eq!(
        status.code(),
        Some(1),
        "expected a clean failure:\n{stderr}"
    );
    for w in why {
        assert!(
            stderr.contains(w),
            "the error does not say {w:?}:\n{stderr}"
        );
    }
    let v = assert_no_discrepancy(verify(topic, Some(group), d), ledger);
    assert!(v.int("pending_records") > 0, "{}", v.report);
}

/// With the fault cleared: a restart runs to the end, the output is byte-identical to a run
/// that never saw the fault, and `verify` finds nothing.
pub fn finish_after_the_fault(topic: &str, group: &str, d: &Dirs, mut ledger: Ledger) {
    ledger.restarts += 1;
    consume_to_end(topic, group, d);
    assert_same_output(&clean_run(topic), d);
    assert_verified(topic, Some(group), d, &mut ledger);
    ledger.book();
}

/// The signal that ended a process, if a signal did.
pub fn killed_by(status: ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(&status)
}

pub fn send_signal(child: &std::process::Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill({}, {sig}) failed", child.id());
}

/// Waits for a child to exit, failing the test after `timeout`.
pub fn wait_exit(child: &mut std::process::Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a spawned child's stderr to the end (it must have been piped).
pub fn stderr_of(child: &mut std::process::Child) -> String {
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut s);
    }
    s
}

/// Sends a child's stderr to a file in `dir` (a pipe nobody reads could fill and block it).
pub fn log_stderr(cmd: &mut Command, dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.stderr"));
    let f = std::fs::File::create(&path).expect("stderr file");
    cmd.stdout(std::process::Stdio::null()).stderr(f);
    path
}

pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last `lines` lines of a log, without colours.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let said = strip_ansi(&read_log(path));
    let tail: Vec<&str> = said.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
