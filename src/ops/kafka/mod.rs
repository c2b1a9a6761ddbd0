//! Shared Kafka plumbing for every role: client settings, waiting for a reachable broker and a
//! topic, creating topics.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

mod ends;
pub mod properties;
pub mod refusal;
mod scan;
mod topic_id;

pub use ends::{stable_end, EndTracking, PartitionEnds};
pub use properties::ClientProperties;
pub use refusal::{Doing, Refusal};
pub use scan::{committed_offsets, scan, topic_id_now, ScanError, Scanned};
pub use topic_id::{current_topic_id, topic_id, TopicIdLookup};

/// How a group spreads partitions over its members (librdkafka's
/// `partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignmentStrategy {
    /// Incremental: a rebalance moves only the partitions that change owner.
    CooperativeSticky,
    /// Eager: every rebalance revokes every partition first.
    Range,
    /// Eager, round robin.
    RoundRobin,
}

impl AssignmentStrategy {
    /// The value librdkafka takes.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentStrategy::CooperativeSticky => "cooperative-sticky",
            AssignmentStrategy::Range => "range",
            AssignmentStrategy::RoundRobin => "roundrobin",
        }
    }

    /// Whether the group uses the incremental (cooperative) rebalance protocol.
    pub fn cooperative(self) -> bool {
        self == AssignmentStrategy::CooperativeSticky
    }
}

/// Logs librdkafka's version and built-in features (ssl, sasl_scram, ...) once, at start-up:
/// what a TLS or SASL setting can rely on.
pub fn log_librdkafka() {
    let (_, version) = rdkafka::util::get_rdkafka_version();
    let features = ClientConfig::new()
        .create_native_config()
        .ok()
        .and_then(|c| c.get("builtin.features").ok())
        .unwrap_or_default();
    info!(%version, builtin_features = %features, "librdkafka");
}

/// Client context that routes librdkafka's errors into our logs, minus the end-of-partition
/// "errors", which readers that set `enable.partition.eof` expect and handle.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_client_line(level, fac, message);
    }
}

/// Logs a librdkafka log line as rdkafka's default does, first noting a refused login or TLS
/// handshake: a client that is not polled (a consumer used only for metadata) learns of them
/// only from these lines, which librdkafka's own threads write.
pub fn log_client_line(level: RDKafkaLogLevel, fac: &str, message: &str) {
    refusal::note_log(message);
    use RDKafkaLogLevel as L;
    // A fresh broker loads its coordinators for a moment; librdkafka retries and says so at
    // warning level. Expected: not something to act on.
    let level = match level {
        L::Warning if message.contains("Coordinator load in progress") => L::Info,
        other => other,
    };
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
        }
        L::Warning => warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Notice | L::Info => info!(target: "librdkafka", "librdkafka: {fac} {message}"),
        L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
    }
}

/// Logs a librdkafka client error, except end-of-partition, which readers expect. The same
/// error again within 10 s is not repeated (a broker that is down reports itself constantly).
pub fn log_client_error(error: KafkaError, reason: &str) {
    static SEEN: std::sync::Mutex<Repeats> = std::sync::Mutex::new(Repeats::new());
    let eof = matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    );
    if eof {
        return;
    }
    refusal::note(&error, reason);
    let text = error.to_string();
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(repeated) = seen.admit(&text) {
        warn!(error = %text, reason, repeated, "librdkafka error");
    }
}

/// Lets a message through once, then the same message again at most every 10 s, counting
/// what it held back (a broker that is down reports itself constantly).
#[derive(Debug, Default)]
pub struct Repeats {
    last: Option<(String, Instant)>,
    suppressed: u64,
}

impl Repeats {
    pub const fn new() -> Self {
        Repeats {
            last: None,
            suppressed: 0,
        }
    }

    /// Some(how many repeats were held back since the last one let through) if `text` should
    /// be logged now.
    pub fn admit(&mut self, text: &str) -> Option<u64> {
        if let Some((t, at)) = &self.last {
            if t == text && at.elapsed() < Duration::from_secs(10) {
                self.suppressed += 1;
                return None;
            }
        }
        self.last = Some((text.to_string(), Instant::now()));
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl rdkafka::consumer::ConsumerContext for QuietEof {}

/// Where to find Kafka and which topic to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic: String,
    /// How long start-up waits for a reachable broker before giving up.
    pub connect_timeout: Duration,
    /// The security flags, `--kafka-config-file` and `-X`: librdkafka properties, applied last.
    pub properties: ClientProperties,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error(
        "could not reach Kafka at {brokers} (--brokers / LANDFALL_BROKERS / BOOTSTRAP_SERVERS) \
         within {waited_secs} s: {last_error}"
    )]
    Unreachable {
        brokers: String,
        waited_secs: u64,
        last_error: String,
    },
    #[error(
        "topic {topic:?} does not exist on {brokers}; create it, or run `landfall produce \
         --create-topic`"
    )]
    TopicMissing { topic: String, brokers: String },
    #[error("could not create topic {topic:?}: {source}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl KafkaSetupError {
    /// Start-up gave up on the broker after waiting since `started`.
    fn unreachable(settings: &KafkaSettings, started: Instant, last_error: String) -> Self {
        KafkaSetupError::Unreachable {
            brokers: settings.brokers.clone(),
            waited_secs: started.elapsed().as_secs(),
            last_error,
        }
    }
}

impl KafkaSettings {
    /// A client configuration with the settings every Landfall client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "landfall")
            // A broker that is down is waited for by our own bounded retry, not by librdkafka's
            // log spam: keep its reconnect backoff short and its logs at warning.
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "4");
        if let Ok(contexts) = std::env::var("LANDFALL_KAFKA_DEBUG") {
            // librdkafka's own debug contexts, e.g. "eos,protocol", for diagnosing the client.
            c.set("debug", contexts).set("log_level", "7");
        }
        self.properties.apply(&mut c);
        c
    }
}

/// How a reader fetches: `landfall consume`, and the bench's bare consumer, so that only the
/// work differs between them (docs/performance.md).
pub fn fetch_settings(c: &mut ClientConfig) -> &mut ClientConfig {
    c.set("fetch.wait.max.ms", "100")
        // When the pre-fetch queue is full, librdkafka stops fetching for this long (1 s by
        // default), which left the pipeline idle for most of every second.
        .set("fetch.queue.backoff.ms", "5")
        // librdkafka pre-fetches up to 100,000 records by default (counted on the one consumer
        // queue every partition's queue forwards to): that alone took the peak RSS at 12
        // partitions from 150 MB to 206 MB, for no speed (the pipeline takes 2,048 records at
        // a time).
        .set("queued.min.messages", "10000")
        // Each fetch response is one buffer that stays allocated until the last of its
        // records is consumed, and librdkafka asks for up to this much of every partition in
        // one response: 1 MB by default, so at 12 partitions the responses alone held about
        // 90 MB (peak RSS 154 MB, against 70 MB at 256 kB, with no change in speed at 3 or
        // 12 partitions). Bigger records still come whole.
        .set("max.partition.fetch.bytes", "262144")
}

/// Waits until the broker answers and the topic exists. Returns the number of partitions.
///
/// Retries with capped exponential backoff until `settings.connect_timeout` has passed.
pub fn wait_for_topic<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
) -> Result<usize, KafkaSetupError> {
    wait_for_metadata(client, settings, &|| ())?.ok_or_else(|| missing(settings))
}

/// `wait_for_topic` for a consumer that nothing has been assigned to yet. A consumer's
/// librdkafka logs and errors (a refused login, an untrusted certificate) reach its context
/// only when it is polled: this polls it between attempts.
pub fn wait_for_topic_polled<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    settings: &KafkaSettings,
) -> Result<usize, KafkaSetupError> {
    let pump = || {
        for _ in 0..1000 {
            match consumer.poll(Duration::ZERO) {
                None => break,
                Some(Err(e)) => refusal::note(&e, &e.to_string()),
                Some(Ok(_)) => {}
            }
        }
    };
    wait_for_metadata(consumer.client(), settings, &pump)?.ok_or_else(|| missing(settings))
}

fn missing(settings: &KafkaSettings) -> KafkaSetupError {
    KafkaSetupError::TopicMissing {
        topic: settings.topic.clone(),
        brokers: settings.brokers.clone(),
    }
}

/// Waits until the broker answers about the topic: Some(partitions), or None if it does not
/// exist. A refusal (login, TLS, ACL) ends the wait at once. `pump` runs after each attempt.
fn wait_for_metadata<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    pump: &dyn Fn(),
) -> Result<Option<usize>, KafkaSetupError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let remaining = settings.connect_timeout.saturating_sub(started.elapsed());
        let attempt = remaining
            .min(Duration::from_secs(2))
            .max(Duration::from_millis(100));
        let last_error = match probe_topic(client, &settings.topic, attempt) {
            Probe::Found(n) => return Ok(Some(n)),
            Probe::Missing => return Ok(None),
            Probe::Refused(code) => {
                let refusal = refusal::refusal(code, "", settings, Doing::Describing);
                return Err(refusal.map_or_else(
                    || KafkaSetupError::unreachable(settings, started, format!("{code:?}")),
                    KafkaSetupError::Refused,
                ));
            }
            Probe::NotReady(e) => e,
        };
        pump();
        if let Some(refusal) = refusal::noted(settings, Doing::Describing) {
            return Err(refusal.into());
        }
        if started.elapsed() >= settings.connect_timeout {
            return Err(KafkaSetupError::unreachable(settings, started, last_error));
        }
        warn!(brokers = %settings.brokers, error = %last_error, "Kafka not ready; retrying");
        std::thread::sleep(backoff.min(settings.connect_timeout.saturating_sub(started.elapsed())));
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// What the broker's metadata says about a topic.
enum Probe {
    Found(usize),
    Missing,
    /// The broker refused to describe the topic to this client.
    Refused(RDKafkaErrorCode),
    NotReady(String),
}

fn probe_topic<C: ClientContext>(client: &Client<C>, topic: &str, timeout: Duration) -> Probe {
    match client.fetch_metadata(Some(topic), timeout) {
        Ok(md) => match md.topics().iter().find(|t| t.name() == topic) {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Probe::Found(t.partitions().len())
            }
            Some(t) => match t.error().map(RDKafkaErrorCode::from) {
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => Probe::Missing,
                Some(e @ RDKafkaErrorCode::TopicAuthorizationFailed) => Probe::Refused(e),
                Some(e) => Probe::NotReady(format!("topic metadata error {e:?}")),
                None => Probe::NotReady("topic has no partitions yet".to_string()),
            },
            None => Probe::NotReady("topic absent from metadata".to_string()),
        },
        Err(e) => Probe::NotReady(e.to_string()),
    }
}

/// Creates the topic if it does not exist. An existing topic is left as it is.
pub async fn create_topic(
    settings: &KafkaSettings,
    partitions: i32,
    replication: i32,
) -> Result<(), KafkaSetupError> {
    let admin: AdminClient<QuietEof> = settings
        .client_config()
        .create_with_context(QuietEof)
        .map_err(|source| KafkaSetupError::CreateTopic {
            topic: settings.topic.clone(),
            source,
        })?;
    // A topic that exists needs no Create ACL; and a broker that refuses this client says so
    // here, within seconds, rather than after the create request's timeout.
    if tokio::task::block_in_place(|| wait_for_metadata(admin.inner(), settings, &|| ()))?.is_some()
    {
        info!(topic = %settings.topic, "topic exists; leaving it as it is");
        return Ok(());
    }
    let topic = NewTopic::new(
        &settings.topic,
        partitions,
        TopicReplication::Fixed(replication),
    );
    let opts = AdminOptions::new().operation_timeout(Some(settings.connect_timeout));
    let started = Instant::now();
    loop {
        let result = admin.create_topics([&topic], &opts).await;
        match result {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(name) => info!(topic = %name, partitions, "topic created"),
                        Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                            info!(topic = %name, "topic exists; leaving it as it is")
                        }
                        Err((_, code)) => {
                            if let Some(r) = refusal::refusal(code, "", settings, Doing::Creating) {
                                return Err(r.into());
                            }
                            return Err(KafkaSetupError::CreateTopic {
                                topic: settings.topic.clone(),
                                source: KafkaError::AdminOp(code),
                            });
                        }
                    }
                }
                break;
            }
            Err(e) if started.elapsed() < settings.connect_timeout => {
                if let Some(r) = refusal::noted(settings, Doing::Creating) {
                    return Err(r.into());
                }
                warn!(error = %e, "creating the topic failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(KafkaSetupError::unreachable(
                    settings,
                    started,
                    e.to_string(),
                ))
            }
        }
    }
    until_in_metadata(admin.inner(), settings, started).await
}

/// KRaft answers CreateTopics once the controller has the topic, and a broker's metadata
/// cache can lag behind it for a moment: a client asking then would be told the topic does
/// not exist. Returns only once the metadata shows it.
async fn until_in_metadata<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
    started: Instant,
) -> Result<(), KafkaSetupError> {
    loop {
        let last_error = match probe_topic(client, &settings.topic, Duration::from_secs(1)) {
            Probe::Found(_) => return Ok(()),
            Probe::Missing => "the new topic is not in the metadata yet".to_string(),
            Probe::Refused(code) => format!("{code:?}"),
            Probe::NotReady(e) => e,
        };
        if started.elapsed() >= settings.connect_timeout {
            return Err(KafkaSetupError::unreachable(settings, started, last_error));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
