//! Benchmarks against a running broker. They print figures and ratios measured side by side in
//! one run; they never pass or fail on time.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

use crate::generator::GeneratorConfig;
use crate::kafka::{create_topic, KafkaSettings};
use crate::producer::{self, send_records, Clock, DeliveryCounter, ProduceConfig, TxnPlan};

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub name: String,
    pub events: u64,
    pub bytes: u64,
    pub wall_secs: f64,
    pub cpu_secs: f64,
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
    let cpu0 = process_cpu_secs();
    let t0 = Instant::now();
    let (events, bytes) = f()?;
    Ok(Measurement {
        name: name.to_string(),
        events,
        bytes,
        wall_secs: t0.elapsed().as_secs_f64(),
        cpu_secs: process_cpu_secs() - cpu0,
    })
}

/// Renders measurements as a fixed-width table.
pub fn table(rows: &[Measurement]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>12} {:>9} {:>10} {:>14}",
        "run", "events", "events/s", "MB/s", "wall s", "CPU s / 1M ev"
    );
    for m in rows {
        let _ = writeln!(
            out,
            "{:<34} {:>10} {:>12.0} {:>9.1} {:>10.2} {:>14.2}",
            m.name,
            m.events,
            m.events_per_sec(),
            m.mb_per_sec(),
            m.wall_secs,
            m.cpu_secs_per_million()
        );
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Setup(#[from] crate::kafka::KafkaSetupError),
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
) -> Result<ProduceReport, BenchError> {
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let bare_topic = KafkaSettings {
        topic: format!("{}-bench-bare-{run_id}", kafka.topic),
        ..kafka.clone()
    };
    let txn_topic = KafkaSettings {
        topic: format!("{}-bench-txn-{run_id}", kafka.topic),
        ..kafka.clone()
    };
    create_topic(&bare_topic, partitions, 1).await?;
    create_topic(&txn_topic, partitions, 1).await?;

    let cfg = ProduceConfig {
        kafka: txn_topic.clone(),
        count: events,
        rate: 0.0,
        clock: Clock::Simulated {
            start_ms: 1_726_210_140_000,
            events_per_sec: 1000.0,
        },
        generator: GeneratorConfig {
            seed: 1,
            ..GeneratorConfig::default()
        },
        txn_size,
        txn_max: Duration::from_secs(1),
        abort_fraction: 0.0,
        transactional_id: format!("landfall-bench-{run_id}"),
        transaction_timeout: Duration::from_secs(60),
        progress_interval: Duration::from_secs(3600),
    };

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

        let name = format!("landfall produce (txn {txn_size})");
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
