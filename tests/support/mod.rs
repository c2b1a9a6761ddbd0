//! Shared test support: the real local Kafka broker, unique topics, running the real binary,
//! and reading a topic back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod broker;
pub mod cluster;
pub mod harness;
pub mod netns;
pub mod output;
pub mod prometheus;
pub mod s3;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

static BROKERS: OnceLock<String> = OnceLock::new();

/// Bootstrap address of the local broker. Starts it with `scripts/kafka start` (which reuses a
/// running one), once per test binary, unless the binary chose other brokers ([`use_brokers`]).
pub fn brokers() -> String {
    BROKERS
        .get_or_init(|| {
            let out = Command::new(repo_root().join("scripts/kafka"))
                .arg("start")
                .output()
                .expect("run scripts/kafka start");
            assert!(
                out.status.success(),
                "scripts/kafka start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .clone()
}

/// Points every command of this test binary at `bootstrap` instead of the local broker (the
/// cluster tests). It must come before the first [`brokers`].
pub fn use_brokers(bootstrap: &str) {
    let chosen = BROKERS.get_or_init(|| bootstrap.to_string());
    assert_eq!(
        chosen, bootstrap,
        "this test binary already uses other brokers"
    );
}

/// A topic name no other test uses.
pub fn unique_topic(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The binary under test: `LANDFALL_BIN` when it is set (say, an older build, to show that a
/// new test fails on old code), else the one cargo built for these tests.
pub fn landfall_bin() -> PathBuf {
    match std::env::var_os("LANDFALL_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_landfall")),
    }
}

/// A `landfall` command with the local broker and quiet logs.
pub fn landfall(args: &[&str]) -> Command {
    let mut c = Command::new(landfall_bin());
    c.args(args)
        .env("LANDFALL_BROKERS", brokers())
        .env("LANDFALL_LOG", "warn")
        .env_remove("BOOTSTRAP_SERVERS")
        .env_remove("TOPIC_NAME")
        .env_remove("RECORDS_LIMIT");
    c
}

/// Runs a command to completion, failing the test with its output if it fails.
pub fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("spawn landfall");
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// One record read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
}

/// Landfall's Kafka settings for the local broker and `topic`.
pub fn settings(topic: &str) -> landfall::ops::kafka::KafkaSettings {
    landfall::ops::kafka::KafkaSettings {
        brokers: brokers(),
        topic: topic.to_string(),
        connect_timeout: Duration::from_secs(30),
        properties: Default::default(),
    }
}

/// Reads every partition of `topic` from the beginning to its end, with the given isolation
/// level ("read_committed" or "read_uncommitted"). Records are in offset order per partition.
pub fn read_topic(topic: &str, isolation: &str) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    landfall::ops::kafka::scan(
        &settings(topic),
        isolation == "read_committed",
        &Default::default(),
        Duration::from_secs(120),
        |r| {
            out.push(ReadRecord {
                partition: r.partition,
                offset: r.offset,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                timestamp_ms: r.timestamp_ms,
            })
        },
    )
    .unwrap_or_else(|e| panic!("reading {topic}: {e}"));
    out
}

/// Whether the broker knows the topic yet.
pub fn topic_exists(topic: &str) -> bool {
    partition_count(topic) > 0
}

/// A scratch directory removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("landfall-test-")
        .tempdir()
        .expect("temp dir")
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A spawned process that is killed if the test ends (or panics) before it is reaped.
pub struct ChildGuard(pub Option<std::process::Child>);

impl ChildGuard {
    pub fn spawn(mut cmd: Command) -> Self {
        ChildGuard(Some(cmd.spawn().expect("spawn landfall")))
    }
    pub fn child(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("child still held")
    }
    /// Sends `signal` and waits for the exit, failing the test after `timeout` with `what`
    /// (and the tail of `log`, when given). The child is no longer held after it.
    pub fn stop(
        &mut self,
        signal: i32,
        timeout: std::time::Duration,
        what: &str,
        log: Option<&std::path::Path>,
    ) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        harness::send_signal(self.child(), signal);
        let status = loop {
            if let Some(s) = self.child().try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > timeout {
                let tail = log.map(|l| harness::log_tail(l, 40)).unwrap_or_default();
                panic!("{what} did not exit within {timeout:?} of signal {signal}; its log ends:\n{tail}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        eprintln!(
            "{what} stopped {:?} after signal {signal}",
            started.elapsed()
        );
        self.0 = None;
        status
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Makes a `landfall` command serve HTTP on a port the system picks (`--http-addr
/// 127.0.0.1:0`) and log the address it got, with warnings and errors as before. Read the port
/// back with [`bound_port`]: a port chosen by the test and bound later by the child could be
/// taken in between.
pub fn http_on_any_port(cmd: &mut Command) -> &mut Command {
    cmd.args(["--http-addr", "127.0.0.1:0"])
        .env("LANDFALL_LOG", "warn,landfall::ops::metrics=info")
}

/// The port a `landfall` child bound for [`http_on_any_port`], from the `serving ...` line it
/// logs to `log` (`addr=127.0.0.1:NNNNN`).
pub fn bound_port(log: &Path, timeout: Duration) -> u16 {
    logged_port(log, "serving /", "addr=", timeout)
}

/// The port in the first line of `log` that contains `line_has`, from its `key` field (such
/// as `addr=127.0.0.1:NNNNN`), waiting up to `timeout` for the line to appear. Colour codes
/// are ignored.
pub fn logged_port(log: &Path, line_has: &str, key: &str, timeout: Duration) -> u16 {
    let deadline = Instant::now() + timeout;
    loop {
        let text = strip_ansi(&std::fs::read_to_string(log).unwrap_or_default());
        let port = text
            .lines()
            .find(|l| l.contains(line_has))
            .and_then(|l| l.split_once(key))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|addr| addr.trim_matches('"').rsplit_once(':'))
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .filter(|p| *p != 0);
        if let Some(port) = port {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "no {line_has:?} line with a {key:?} port in {} within {timeout:?}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `text` without ANSI escape sequences (the log colours its field names).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then one final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A consumer group as the broker describes it.
#[derive(Debug, Clone)]
pub struct GroupState {
    /// "Stable", "PreparingRebalance", "CompletingRebalance", "Empty" or "Dead".
    pub state: String,
    /// The member ids, sorted.
    pub members: Vec<String>,
}

impl GroupState {
    pub fn stable_with(&self, members: usize) -> bool {
        self.state == "Stable" && self.members.len() == members
    }
}

/// Polls the broker's description of `group` until `pred` holds, failing the test after
/// `timeout` with the last description. For waiting on what a sleep past the session timeout
/// used to stand for: a member gone, a group settled.
pub fn wait_for_group_members(
    group: &str,
    what: &str,
    timeout: Duration,
    pred: impl FnMut(&GroupState) -> bool,
) -> GroupState {
    wait_for_group_members_on(&brokers(), group, what, timeout, pred)
}

/// [`wait_for_group_members`] on the broker at `brokers`.
pub fn wait_for_group_members_on(
    brokers: &str,
    group: &str,
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut(&GroupState) -> bool,
) -> GroupState {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("group client");
    let deadline = Instant::now() + timeout;
    loop {
        let last = match client.fetch_group_list(Some(group), Duration::from_secs(5)) {
            Ok(list) => {
                let g = list.groups().iter().find(|g| g.name() == group);
                let mut members: Vec<String> = g
                    .map(|g| g.members().iter().map(|m| m.id().to_string()).collect())
                    .unwrap_or_default();
                members.sort();
                let now = GroupState {
                    state: g.map_or("Dead", |g| g.state()).to_string(),
                    members,
                };
                if pred(&now) {
                    return now;
                }
                format!("{now:?}")
            }
            Err(e) => format!("error {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what} in group {group}; last seen: {last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GET `path` on 127.0.0.1:`port` (ureq, which reads chunked bodies): (status, body), or None
/// if nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut answer = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .call()
        .ok()?;
    let status = answer.status().as_u16();
    let body = answer.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// `mount` with arguments, failing the test with its message.
pub fn mount(args: &[&str]) {
    let out = Command::new("mount")
        .args(args)
        .output()
        .expect("run mount");
    assert!(
        out.status.success(),
        "mount {args:?} failed: {} (these tests need root or CAP_SYS_ADMIN)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A mount that is undone when the test ends.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The Python with pyarrow and duckdb: `LANDFALL_PYTHON` (which `scripts/test` sets), else the
/// virtualenv `scripts/test` keeps in the cache directory, else `python3`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LANDFALL_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("LANDFALL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/landfall")));
    cache
        .map(|c| c.join("venv/bin/python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The independent Kafka client, confluent-kafka (its own librdkafka), reading the librdkafka
/// property file `file`: `tests/kafka_probe.py FILE MODE TOPIC [ARG]`, JSON on stdout.
pub fn kafka_probe(file: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python())
        .arg(repo_root().join("tests/kafka_probe.py"))
        .arg(file)
        .args(args)
        .output()
        .expect("run tests/kafka_probe.py");
    assert!(
        out.status.success(),
        "kafka_probe.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Runs a future to completion on a runtime of its own (for the rdkafka admin client).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// An admin client on the local broker.
pub fn admin() -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client")
}

/// How many partitions the broker's metadata gives `topic` (0 if it does not know it).
pub fn partition_count(topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("metadata client");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()
        .and_then(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().len())
        })
        .unwrap_or(0)
}

/// Creates `topic` with `partitions` partitions and returns once the broker's metadata shows
/// all of them.
pub fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let r = block_on(admin().create_topics([&t], &AdminOptions::new())).unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "creating {topic}: {r:?}");
    wait_until(
        "the new topic's partitions",
        Duration::from_secs(30),
        || partition_count(topic) == partitions as usize,
    );
}

/// `landfall windows` on `report` with `args`; it does not need the broker.
pub fn landfall_windows(report: &Path, args: &[&str]) -> Output {
    Command::new(landfall_bin())
        .arg("windows")
        .arg("--output-dir")
        .arg(report)
        .args(args)
        .env("LANDFALL_LOG", "warn")
        .output()
        .expect("run landfall windows")
}
