//! Benchmarks against a running broker. They print figures and ratios measured side by side in
//! one run; they never pass or fail on time.

mod drain;
mod scale;
use drain::consume_args;
pub use drain::{
    consume, consume_summary, per_file_cost, remove_outputs, ConsumeReport, RoundRatios,
};
pub use scale::{scale, scale_table, ScaleReport};

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::ops::kafka::{create_topic, KafkaSettings};
use crate::produce::generator::GeneratorConfig;
use crate::produce::producer::{
    self, send_records, Clock, DeliveryCounter, ProduceConfig, TxnPlan,
};

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub name: String,
    pub events: u64,
    pub bytes: u64,
    pub wall_secs: f64,
    pub cpu_secs: f64,
    /// CPU seconds the local broker spent meanwhile, when its pid is known
    /// (`LANDFALL_BROKER_PID`, which `scripts/bench` sets).
    pub broker_cpu_secs: Option<f64>,
}

impl Measurement {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.wall_secs
    }
    pub fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.wall_secs
    }
    pub fn cpu_secs_per_million(&self) -> f64 {
        self.cpu_secs * 1e6 / self.events.max(1) as f64
    }
    pub fn broker_cpu_secs_per_million(&self) -> Option<f64> {
        self.broker_cpu_secs
            .map(|c| c * 1e6 / self.events.max(1) as f64)
    }
}

/// CPU time (user + system, all threads) of the local broker so far, from /proc.
pub fn broker_cpu_secs() -> Option<f64> {
    let pid: u32 = std::env::var("LANDFALL_BROKER_PID")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz.max(1.0))
}

/// CPU time (user + system) of this process so far, every thread included.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and reads nothing else.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Times `f`, which returns (events, bytes).
pub fn measure<E>(name: &str, f: impl FnOnce() -> Result<(u64, u64), E>) -> Result<Measurement, E> {
    settle();
    let cpu0 = process_cpu_secs();
    let broker0 = broker_cpu_secs();
    let t0 = Instant::now();
    let (events, bytes) = f()?;
    Ok(Measurement {
        name: name.to_string(),
        events,
        bytes,
        wall_secs: t0.elapsed().as_secs_f64(),
        cpu_secs: process_cpu_secs() - cpu0,
        broker_cpu_secs: broker0.zip(broker_cpu_secs()).map(|(a, b)| b - a),
    })
}

/// Renders measurements as a fixed-width table.
pub fn table(rows: &[Measurement]) -> String {
    let rows: Vec<_> = rows.iter().map(|m| ("", m, None)).collect();
    render_rows(&rows)
}

/// One line per (tag, measurement, peak RSS in MB if measured).
fn render_rows(rows: &[(&str, &Measurement, Option<f64>)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<4}{:<42} {:>9} {:>10} {:>7} {:>7} {:>12} {:>15} {:>12}",
        "",
        "run",
        "events",
        "events/s",
        "MB/s",
        "wall s",
        "CPU s/1M ev",
        "broker CPU/1M",
        "peak RSS MB"
    );
    for (tag, m, rss) in rows {
        let _ = writeln!(
            out,
            "{tag:<4}{:<42} {:>9} {:>10.0} {:>7.1} {:>7.2} {:>12.2} {:>15} {:>12}",
            m.name,
            m.events,
            m.events_per_sec(),
            m.mb_per_sec(),
            m.wall_secs,
            m.cpu_secs_per_million(),
            m.broker_cpu_secs_per_million()
                .map_or("-".to_string(), |c| format!("{c:.2}")),
            rss.map_or("-".to_string(), |r| format!("{r:.1}"))
        );
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Setup(#[from] crate::ops::kafka::KafkaSetupError),
    #[error(transparent)]
    Produce(#[from] producer::ProduceError),
    #[error("bare producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("benchmark thread failed: {0}")]
    Thread(String),
    #[error("writing {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Distinguishes one benchmark run's topics and groups from every other run's.
fn run_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    )
}

/// A fresh topic for one measurement of a run.
fn bench_topic(kafka: &KafkaSettings, kind: &str, run_id: &str) -> KafkaSettings {
    KafkaSettings {
        topic: format!("{}-bench-{kind}-{run_id}", kafka.topic),
        ..kafka.clone()
    }
}

/// A seeded, simulated-clock producer run of `events` records for the benchmarks.
fn load_config(
    topic: &KafkaSettings,
    events: u64,
    txn_size: usize,
    out_of_order_secs: u64,
    run_id: &str,
) -> ProduceConfig {
    ProduceConfig {
        kafka: topic.clone(),
        count: events,
        rate: 0.0,
        clock: Clock::Simulated {
            start_ms: 1_726_210_140_000,
            events_per_sec: 1000.0,
        },
        generator: GeneratorConfig {
            seed: 1,
            out_of_order_secs,
            ..GeneratorConfig::default()
        },
        txn_size,
        txn_max: Duration::from_secs(1),
        abort_fraction: 0.0,
        transactional_id: format!("landfall-bench-{}-{run_id}", topic.topic),
        transaction_timeout: Duration::from_secs(60),
        progress_interval: Duration::from_secs(3600),
        http_addr: None,
        producers: 1,
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProduceReport {
    pub bare: Measurement,
    pub landfall: Measurement,
    /// landfall events/s over bare events/s.
    pub produce_ratio: f64,
    pub txn_size: usize,
    pub partitions: i32,
}

/// Producer benchmark: a bare, non-transactional rdkafka producer sending pre-generated records,
/// then `landfall produce` (transactional, generating as it goes) sending the same records.
pub async fn produce(
    kafka: &KafkaSettings,
    events: u64,
    partitions: i32,
    txn_size: usize,
    producers: usize,
) -> Result<ProduceReport, BenchError> {
    let run_id = run_id();
    let bare_topic = bench_topic(kafka, "bare", &run_id);
    let txn_topic = bench_topic(kafka, "txn", &run_id);
    create_topic(&bare_topic, partitions, 1).await?;
    create_topic(&txn_topic, partitions, 1).await?;

    let cfg = load_config(&txn_topic, events, txn_size, 0, &run_id);
    let cfg = ProduceConfig { producers, ..cfg };

    tokio::task::spawn_blocking(move || {
        let records = TxnPlan::new(&cfg).next_batch(events as usize).records;
        let bytes: u64 = records
            .iter()
            .map(|r| (r.key.len() + r.value.len()) as u64)
            .sum();

        let bare = measure("bare rdkafka producer (no txn)", || {
            let p: ThreadedProducer<DeliveryCounter> = producer::producer_config(&bare_topic)
                .create_with_context(DeliveryCounter::default())?;
            send_records(&p, &bare_topic.topic, &records)?;
            p.flush(Timeout::Never)?;
            Ok::<_, BenchError>((records.len() as u64, bytes))
        })?;
        drop(records);

        let name = format!("landfall produce (txn {txn_size}, {producers} producers)");
        let landfall = measure(&name, || {
            let summary = producer::run(&cfg, &CancellationToken::new())?;
            Ok::<_, BenchError>((summary.committed_records, summary.bytes_committed))
        })?;
        Ok(ProduceReport {
            produce_ratio: landfall.events_per_sec() / bare.events_per_sec(),
            bare,
            landfall,
            txn_size,
            partitions,
        })
    })
    .await
    .map_err(|e| BenchError::Thread(e.to_string()))?
}

/// Runs the `landfall` binary with `args` and returns (wall seconds, CPU seconds, peak RSS MB)
/// of that child alone. Time comes from `wait4`; the peak RSS is the child's own `VmHWM`, which
/// it writes at exit (Linux's `ru_maxrss` of a child also counts the parent's memory at fork).
fn run_child(args: &[String]) -> Result<(f64, f64, f64), BenchError> {
    settle();
    Child::spawn(args, "")?.wait()
}

/// Writes back every dirty page on the machine before a measurement starts, untimed. Loading
/// the topic leaves the broker's new log segments dirty (about 1 GB for 5M records), and a
/// drain without durability, or an earlier benchmark, leaves tens of thousands of files
/// dirty; the kernel would write them back during whichever drain came next (its 30 s expiry),
/// so a drain would pay for the step before it.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// How long writing back what is dirty now takes: after a drain, the part of its file writes
/// that the kernel had not yet done when the drain ended.
fn writeback_secs() -> f64 {
    let t0 = Instant::now();
    settle();
    t0.elapsed().as_secs_f64()
}

/// A `landfall` child process being measured.
struct Child {
    pid: libc::pid_t,
    args: String,
    rss_file: std::path::PathBuf,
    started: Instant,
}

impl Child {
    fn spawn(args: &[String], tag: &str) -> Result<Child, BenchError> {
        let exe = std::env::current_exe().map_err(|source| BenchError::Io {
            path: "current_exe".into(),
            source,
        })?;
        let rss_file =
            std::env::temp_dir().join(format!("landfall-bench-rss-{}{tag}", std::process::id()));
        let _ = std::fs::remove_file(&rss_file);
        let started = Instant::now();
        let child = std::process::Command::new(&exe)
            .args(args)
            .env("LANDFALL_LOG", "warn")
            .env("LANDFALL_PEAK_RSS_FILE", &rss_file)
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|source| BenchError::Io {
                path: exe.clone(),
                source,
            })?;
        Ok(Child {
            pid: child.id() as libc::pid_t,
            args: args.join(" "),
            rss_file,
            started,
        })
    }

    /// Waits for the child; (wall seconds since it started, CPU seconds, peak RSS MB).
    fn wait(self) -> Result<(f64, f64, f64), BenchError> {
        let mut status = 0;
        // SAFETY: waits for our own child and fills the rusage struct we own.
        let usage = unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::wait4(self.pid, &mut status, 0, &mut u);
            u
        };
        let wall = self.started.elapsed().as_secs_f64();
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            return Err(BenchError::Thread(format!(
                "landfall {} failed (status {status})",
                self.args
            )));
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Ok((
            wall,
            tv(usage.ru_utime) + tv(usage.ru_stime),
            peak_rss_kb(&self.rss_file).unwrap_or(usage.ru_maxrss as f64) / 1024.0,
        ))
    }
}

/// Everything `landfall bench all` measured, with the headline figures at the top level.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AllReport {
    pub events: u64,
    pub partitions: i32,
    /// (b) exactly-once consume over (a) bare consumer, events/s.
    pub drain_ratio: f64,
    /// (b) over (c), the same consume without fsync and commits.
    pub eos_ratio: f64,
    /// (e) landfall produce over (d) bare producer, events/s.
    pub produce_ratio: f64,
    pub consume_events_per_sec: f64,
    pub consumer_peak_rss_mb: f64,
    pub produce: ProduceReport,
    pub consume: ConsumeReport,
    /// The same drains at the generator's default density (10 records per simulated second):
    /// about 100 times as many window files for the same events.
    pub consume_sparse: ConsumeReport,
}

/// The table of `bench all`: (a) to (h), with peak RSS where it was measured (child
/// processes), and the ratios.
pub fn all_table(r: &AllReport) -> String {
    let mut out = render_rows(&[
        ("(a)", &r.consume.bare, None),
        (
            "(b)",
            &r.consume.landfall,
            Some(r.consume.consumer_peak_rss_mb),
        ),
        (
            "(c)",
            &r.consume.landfall_no_durability,
            Some(r.consume.no_durability_peak_rss_mb),
        ),
        ("(d)", &r.produce.bare, None),
        ("(e)", &r.produce.landfall, None),
        ("(f)", &r.consume_sparse.bare, None),
        (
            "(g)",
            &r.consume_sparse.landfall,
            Some(r.consume_sparse.consumer_peak_rss_mb),
        ),
        (
            "(h)",
            &r.consume_sparse.landfall_no_durability,
            Some(r.consume_sparse.no_durability_peak_rss_mb),
        ),
    ]);
    let _ = writeln!(
        out,
        "drain_ratio   b/a = {:.3}   (target >= 0.8)",
        r.drain_ratio
    );
    let _ = writeln!(
        out,
        "eos_ratio     b/c = {:.3}   (target >= 0.9)",
        r.eos_ratio
    );
    let _ = writeln!(
        out,
        "produce_ratio e/d = {:.3}   (target >= 0.9)",
        r.produce_ratio
    );
    let sparse = &r.consume_sparse;
    let _ = writeln!(
        out,
        "sparse (f-h: {} records per simulated second, {} files landed against {}):",
        sparse.sim_events_per_sec, sparse.files_landed, r.consume.files_landed
    );
    let _ = writeln!(
        out,
        "drain_ratio   g/f = {:.3}   (target >= 0.8)",
        sparse.drain_ratio
    );
    let _ = writeln!(
        out,
        "eos_ratio     g/h = {:.3}   (target >= 0.9)",
        sparse.eos_ratio
    );
    out += &per_file_cost(&[r.consume.clone(), sparse.clone()]);
    let _ = writeln!(
        out,
        "consumer peak RSS = {:.1} MB dense, {:.1} MB sparse, at {} events over {} partitions \
         (target <= 150 MB)",
        r.consumer_peak_rss_mb, sparse.consumer_peak_rss_mb, r.events, r.partitions
    );
    out
}

/// `bench all`: the producer benchmark, then the drain benchmark, in one run.
pub async fn all(
    kafka: &KafkaSettings,
    events: u64,
    partitions: i32,
    txn_size: usize,
    producers: usize,
    work_dir: &std::path::Path,
) -> Result<AllReport, BenchError> {
    let produce = produce(kafka, events, partitions, txn_size, producers).await?;
    let consume_sparse = consume(kafka, events, partitions, work_dir, 10.0, None, 1).await?;
    let consume = consume(kafka, events, partitions, work_dir, 1000.0, None, 1).await?;
    remove_outputs(&[&consume, &consume_sparse]);
    Ok(AllReport {
        events,
        partitions,
        drain_ratio: consume.drain_ratio,
        eos_ratio: consume.eos_ratio,
        produce_ratio: produce.produce_ratio,
        consume_events_per_sec: consume.consume_events_per_sec,
        consumer_peak_rss_mb: consume.consumer_peak_rss_mb,
        produce,
        consume,
        consume_sparse,
    })
}

/// This process's peak resident set (`VmHWM`), in kB.
pub fn own_peak_rss_kb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn peak_rss_kb(file: &std::path::Path) -> Option<f64> {
    let v = std::fs::read_to_string(file).ok()?.trim().parse().ok();
    let _ = std::fs::remove_file(file);
    v
}
