//! The transactional producer loop: generated records go to Kafka in transactions of
//! `txn_size`, a chosen fraction of which are aborted on purpose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaError};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::ops::kafka::{refusal, wait_for_topic, Doing, KafkaSettings, KafkaSetupError, Refusal};
use crate::produce::generator::{Generator, GeneratorConfig, ProducedRecord};
use crate::produce::txn::{abort_uncommitted, drain, finish_txn, Open, Txn};

/// Where "now" comes from for generated events.
#[derive(Debug, Clone, PartialEq)]
pub enum Clock {
    /// The machine's clock, as the original producer used.
    Real,
    /// A clock that starts at `start_ms` and advances `1 / events_per_sec` seconds per record,
    /// so a seeded run is reproducible byte for byte.
    Simulated { start_ms: i64, events_per_sec: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProduceConfig {
    pub kafka: KafkaSettings,
    /// Records to generate; 0 means until stopped.
    pub count: u64,
    /// Records per second; 0 means as fast as possible.
    pub rate: f64,
    pub clock: Clock,
    pub generator: GeneratorConfig,
    pub txn_size: usize,
    /// A paced transaction is committed once it has been open this long, even if not full.
    pub txn_max: Duration,
    pub abort_fraction: f64,
    pub transactional_id: String,
    pub transaction_timeout: Duration,
    pub progress_interval: Duration,
    /// Where /metrics, /healthz and /readyz are served, if anywhere.
    pub http_addr: Option<std::net::SocketAddr>,
    /// Transactional producers working side by side, each with its own transactional id
    /// (`<id>-<n>` when more than one), seed and share of the records.
    pub producers: usize,
}

/// Totals of one producer run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceSummary {
    pub generated: u64,
    pub committed_records: u64,
    pub aborted_records: u64,
    pub committed_txns: u64,
    pub aborted_txns: u64,
    /// Transactions that hit an abortable error and were sent again.
    pub retried_txns: u64,
    pub bytes_committed: u64,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("could not create the Kafka producer: {0}")]
    Client(KafkaError),
    #[error("could not initialise transactions for transactional id {id:?}: {source}")]
    InitTransactions { id: String, source: KafkaError },
    #[error("fatal producer error (the transactional id may be in use by another producer): {0}")]
    Fatal(KafkaError),
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("gave up on a transaction after {attempts} attempts: {last}")]
    RetriesExhausted { attempts: u32, last: String },
    #[error("{0}")]
    Worker(String),
}

/// One transaction's worth of records and whether the plan aborts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub records: Vec<ProducedRecord>,
    pub abort: bool,
}

/// Turns the generator into a sequence of transactions. Both the producer loop and tests use
/// it, so a test can know exactly which records a run commits.
pub struct TxnPlan {
    generator: Generator,
    clock: Clock,
    abort_fraction: f64,
    generated: u64,
}

impl TxnPlan {
    pub fn new(cfg: &ProduceConfig) -> Self {
        TxnPlan {
            generator: Generator::new(cfg.generator.clone()),
            clock: cfg.clock.clone(),
            abort_fraction: cfg.abort_fraction,
            generated: 0,
        }
    }

    /// "Now" for the next record.
    pub fn now_ms(&self) -> i64 {
        match self.clock {
            Clock::Real => chrono::Utc::now().timestamp_millis(),
            Clock::Simulated {
                start_ms,
                events_per_sec,
            } => start_ms + (self.generated as f64 * 1000.0 / events_per_sec) as i64,
        }
    }

    pub fn next_record(&mut self) -> ProducedRecord {
        let now = self.now_ms();
        self.generated += 1;
        self.generator.next_record(now)
    }

    /// Draws whether the transaction that was just filled is to be aborted.
    pub fn decide_abort(&mut self) -> bool {
        self.generator.decide(self.abort_fraction)
    }

    /// The next full transaction, for callers that do not pace (tests, benchmarks).
    pub fn next_batch(&mut self, size: usize) -> Batch {
        let records = (0..size).map(|_| self.next_record()).collect();
        Batch {
            records,
            abort: self.decide_abort(),
        }
    }
}

/// Counts delivery failures reported by librdkafka's background thread.
pub struct DeliveryCounter {
    pub failed: AtomicU64,
    /// Delivered records, for the metrics (a no-op counter for the bare benchmark producer).
    pub sent: prometheus::IntCounter,
}

impl DeliveryCounter {
    /// Counts deliveries into the producer's `landfall_producer_records_sent_total`.
    pub fn with_metrics() -> Self {
        DeliveryCounter {
            failed: AtomicU64::new(0),
            sent: crate::ops::metrics::producer().sent.clone(),
        }
    }
}

impl Default for DeliveryCounter {
    fn default() -> Self {
        DeliveryCounter {
            failed: AtomicU64::new(0),
            sent: prometheus::IntCounter::new("unregistered", "not exported")
                .expect("valid metric"),
        }
    }
}

impl ClientContext for DeliveryCounter {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::ops::kafka::log_client_error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::ops::kafka::log_client_line(level, fac, message);
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.sent.inc();
        }
        if let Err((e, _)) = result {
            crate::ops::kafka::refusal::note(e, "");
            crate::ops::metrics::producer().error("delivery");
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!(error = %e, "delivery failed; the transaction will be aborted and retried");
            }
        }
    }
}

/// The producer settings shared by the transactional producer and the bare benchmark producer.
pub fn producer_config(kafka: &KafkaSettings) -> rdkafka::ClientConfig {
    let mut c = kafka.client_config();
    c.set("linger.ms", "1")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        // Java clients' partitioner, so a key lands on the same partition whoever writes it.
        .set("partitioner", "murmur2_random")
        .set("acks", "all");
    kafka.properties.apply(&mut c);
    c
}

/// Sends every record, waiting for queue space when librdkafka's buffer is full.
///
/// A `ThreadedProducer`, because `abort_transaction` blocks until the purged messages' delivery
/// reports have been served, which needs a thread polling beside it.
pub fn send_records<C: ProducerContext<DeliveryOpaque = ()>>(
    producer: &ThreadedProducer<C>,
    topic: &str,
    records: &[ProducedRecord],
) -> Result<(), KafkaError> {
    for r in records {
        let mut rec = BaseRecord::to(topic)
            .key(&r.key[..])
            .payload(&r.value[..])
            .timestamp(r.timestamp_ms);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The background thread drains the queue; give it a moment.
                    std::thread::sleep(Duration::from_millis(1));
                    rec = back;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    Ok(())
}

pub(super) fn txn_error(e: &KafkaError) -> Option<&RDKafkaError> {
    match e {
        KafkaError::Transaction(t) => Some(t),
        _ => None,
    }
}

pub(super) const MAX_TXN_ATTEMPTS: u32 = 5;

/// A refusal behind a producer error (a missing ACL, a failed login), if it is one: no retry
/// can fix it.
pub(super) fn refused(e: &KafkaError, cfg: &ProduceConfig) -> Option<Refusal> {
    let doing = Doing::Writing {
        transactional_id: &cfg.transactional_id,
    };
    refusal::behind(Some(e), &cfg.kafka, doing)
}

/// Runs the producer until `count` records have been generated or `shutdown` is cancelled.
///
/// Blocking: call it from a thread that may block.
pub fn run(
    cfg: &ProduceConfig,
    shutdown: &CancellationToken,
) -> Result<ProduceSummary, ProduceError> {
    if cfg.producers <= 1 {
        return run_one(cfg, shutdown);
    }
    // One transaction at a time per producer, and each commit waits a broker round trip:
    // several producers overlap those waits. Each has its own id, seed and share of the
    // records (and of the rate, and of the simulated clock's speed), so together they write
    // the same volume over the same simulated time span.
    let k = cfg.producers;
    let started = Instant::now();
    let results: Vec<Result<ProduceSummary, ProduceError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..k)
            .map(|i| {
                let mut c = cfg.clone();
                c.producers = 1;
                c.transactional_id = format!("{}-{i}", cfg.transactional_id);
                c.generator.seed = cfg.generator.seed.wrapping_add(i as u64);
                if cfg.count > 0 {
                    c.count = cfg.count / k as u64 + u64::from((i as u64) < cfg.count % k as u64);
                }
                c.rate = cfg.rate / k as f64;
                if let Clock::Simulated { events_per_sec, .. } = &mut c.clock {
                    *events_per_sec /= k as f64;
                }
                scope.spawn(move || run_one(&c, shutdown))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ProduceError::Worker("a producer thread panicked".into()))
                })
            })
            .collect()
    });
    let mut total = ProduceSummary::default();
    for r in results {
        let s = r?;
        total.generated += s.generated;
        total.committed_records += s.committed_records;
        total.aborted_records += s.aborted_records;
        total.committed_txns += s.committed_txns;
        total.aborted_txns += s.aborted_txns;
        total.retried_txns += s.retried_txns;
        total.bytes_committed += s.bytes_committed;
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// One transactional producer.
fn run_one(
    cfg: &ProduceConfig,
    shutdown: &CancellationToken,
) -> Result<ProduceSummary, ProduceError> {
    let started = Instant::now();
    let mut producer = transactional_producer(cfg)?;
    let metrics = crate::ops::metrics::producer();
    metrics.process.set_ready(true);

    let mut plan = TxnPlan::new(cfg);
    let mut summary = ProduceSummary::default();
    let mut progress = ProgressLog::new(cfg.progress_interval);
    let pace_start = Instant::now();

    'txns: while cfg.count == 0 || summary.generated < cfg.count {
        if shutdown.is_cancelled() {
            break;
        }
        producer.begin_transaction().map_err(ProduceError::Fatal)?;
        let open = Open::now(cfg);
        let (txn_opened, txn_max) = (open.opened, open.fill_for);
        let mut batch = Vec::with_capacity(cfg.txn_size);
        while batch.len() < cfg.txn_size && (cfg.count == 0 || summary.generated < cfg.count) {
            if cfg.rate > 0.0 {
                let due = pace_start + Duration::from_secs_f64(summary.generated as f64 / cfg.rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep((due - now).min(Duration::from_millis(100)));
                    if shutdown.is_cancelled() {
                        break;
                    }
                    if txn_opened.elapsed() >= txn_max && !batch.is_empty() {
                        break;
                    }
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                break;
            }
            let record = plan.next_record();
            summary.generated += 1;
            if let Err(e) = send_records(&producer, &cfg.kafka.topic, std::slice::from_ref(&record))
            {
                metrics.error("send");
                warn!(error = %e, "send failed inside a transaction");
            }
            batch.push(record);
            progress.maybe_log(&summary);
            if cfg.rate > 0.0 && txn_opened.elapsed() >= txn_max {
                break;
            }
        }
        if shutdown.is_cancelled() {
            // The batch may be short of what the plan wanted: abort it rather than commit a
            // partial transaction, and say so in the summary. Let what was sent be delivered
            // first: aborting with records in flight purges them, and the broker can then
            // refuse the EndTxn (INVALID_TXN_STATE), which librdkafka treats as fatal.
            drain(&producer, &open);
            abort_uncommitted(&mut producer, cfg)?;
            summary.aborted_txns += 1;
            summary.aborted_records += batch.len() as u64;
            metrics.txn_ended(false, batch.len(), txn_opened);
            info!(records = batch.len(), "stopping: open transaction aborted");
            break 'txns;
        }
        let planned_abort = plan.decide_abort();
        let txn = Txn {
            records: &batch,
            planned_abort,
            open,
        };
        let committed = finish_txn(&mut producer, cfg, txn, &mut summary)?;
        metrics.txn_ended(committed, batch.len(), txn_opened);
    }
    metrics.process.set_ready(false);
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The transactional producer, its topic found and its transactions initialised (which
/// fences an earlier producer with the same transactional id).
pub(super) fn transactional_producer(
    cfg: &ProduceConfig,
) -> Result<ThreadedProducer<DeliveryCounter>, ProduceError> {
    let mut config = producer_config(&cfg.kafka);
    config
        .set("transactional.id", &cfg.transactional_id)
        .set("enable.idempotence", "true")
        // Right after a commit the coordinator answers CONCURRENT_TRANSACTIONS until the
        // markers are written; librdkafka's default 100 ms backoff would then dominate.
        .set("retry.backoff.ms", "5")
        .set("retry.backoff.max.ms", "100")
        .set(
            "transaction.timeout.ms",
            cfg.transaction_timeout.as_millis().to_string(),
        );
    let producer: ThreadedProducer<DeliveryCounter> = config
        .create_with_context(DeliveryCounter::with_metrics())
        .map_err(ProduceError::Client)?;
    let partitions = wait_for_topic(producer.client(), &cfg.kafka)?;
    info!(topic = %cfg.kafka.topic, partitions, "topic found");

    init_transactions(&producer, cfg)?;
    info!(transactional_id = %cfg.transactional_id, "transactions initialised");
    Ok(producer)
}

/// A progress line every interval: records sent, the rate since the last line, transactions.
struct ProgressLog {
    every: Duration,
    last: Instant,
    last_count: u64,
}

impl ProgressLog {
    fn new(every: Duration) -> Self {
        ProgressLog {
            every,
            last: Instant::now(),
            last_count: 0,
        }
    }

    fn maybe_log(&mut self, summary: &ProduceSummary) {
        if self.last.elapsed() < self.every {
            return;
        }
        let rate = (summary.generated - self.last_count) as f64 / self.last.elapsed().as_secs_f64();
        info!(
            sent = summary.generated,
            rate = rate.round() as u64,
            txns_committed = summary.committed_txns,
            txns_aborted = summary.aborted_txns,
            "producing"
        );
        self.last = Instant::now();
        self.last_count = summary.generated;
    }
}

fn init_transactions<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    cfg: &ProduceConfig,
) -> Result<(), ProduceError> {
    let started = Instant::now();
    loop {
        let Err(e) = producer.init_transactions(Timeout::After(Duration::from_secs(10))) else {
            return Ok(());
        };
        if let Some(r) = refused(&e, cfg) {
            return Err(r.into());
        }
        if !txn_error(&e).is_some_and(|t| t.is_retriable())
            || started.elapsed() >= cfg.kafka.connect_timeout
        {
            return Err(ProduceError::InitTransactions {
                id: cfg.transactional_id.clone(),
                source: e,
            });
        }
        warn!(error = %e, "init_transactions failed; retrying");
        std::thread::sleep(Duration::from_millis(500));
    }
}
