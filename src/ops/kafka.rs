//! Shared Kafka plumbing for every role: client settings, waiting for a reachable broker and a
//! topic, creating topics.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

/// Client context that routes librdkafka's errors into our logs, minus the end-of-partition
/// "errors", which readers that set `enable.partition.eof` expect and handle.
#[derive(Debug, Default, Clone, Copy)]
pub struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
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
        c
    }
}

/// Waits until the broker answers and the topic exists. Returns the number of partitions.
///
/// Retries with capped exponential backoff until `settings.connect_timeout` has passed.
pub fn wait_for_topic<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
) -> Result<usize, KafkaSetupError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(100);
    loop {
        let remaining = settings.connect_timeout.saturating_sub(started.elapsed());
        let attempt = remaining
            .min(Duration::from_secs(5))
            .max(Duration::from_millis(100));
        let last_error = match probe_topic(client, &settings.topic, attempt) {
            Probe::Found(n) => return Ok(n),
            Probe::Missing => {
                return Err(KafkaSetupError::TopicMissing {
                    topic: settings.topic.clone(),
                    brokers: settings.brokers.clone(),
                })
            }
            Probe::NotReady(e) => e,
        };
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
    let admin: AdminClient<_> =
        settings
            .client_config()
            .create()
            .map_err(|source| KafkaSetupError::CreateTopic {
                topic: settings.topic.clone(),
                source,
            })?;
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
                            return Err(KafkaSetupError::CreateTopic {
                                topic: settings.topic.clone(),
                                source: KafkaError::AdminOp(code),
                            })
                        }
                    }
                }
                break;
            }
            Err(e) if started.elapsed() < settings.connect_timeout => {
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
    // KRaft answers CreateTopics once the controller has the topic, and a broker's metadata
    // cache can lag behind it for a moment: a client asking then would be told the topic does
    // not exist. Return only once the metadata shows it.
    loop {
        let last_error = match probe_topic(admin.inner(), &settings.topic, Duration::from_secs(1)) {
            Probe::Found(_) => return Ok(()),
            Probe::Missing => "the new topic is not in the metadata yet".to_string(),
            Probe::NotReady(e) => e,
        };
        if started.elapsed() >= settings.connect_timeout {
            return Err(KafkaSetupError::unreachable(settings, started, last_error));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What librdkafka's statistics say about each partition's end, recorded from a client
/// context's `stats` callback (`statistics.interval.ms`).
#[derive(Debug, Default)]
pub struct PartitionEnds {
    by_partition: std::sync::Mutex<std::collections::BTreeMap<i32, PartitionEnd>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct PartitionEnd {
    /// The last stable offset (else the high watermark): what a read_committed reader reaches.
    end: Option<i64>,
    /// Where the fetcher stood at the last end-of-partition event. It moves past aborted
    /// records and transaction markers, which never reach the application.
    eof: Option<i64>,
}

impl PartitionEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<i32, PartitionEnd>> {
        self.by_partition.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, stats: &rdkafka::Statistics, topic: &str) {
        let Some(t) = stats.topics.get(topic) else {
            return;
        };
        let mut ends = self.lock();
        for (p, part) in &t.partitions {
            if *p < 0 {
                continue;
            }
            let e = ends.entry(*p).or_default();
            let end = if part.ls_offset >= 0 {
                part.ls_offset
            } else {
                part.hi_offset
            };
            if end >= 0 {
                e.end = Some(end);
            }
            if part.eof_offset >= 0 {
                e.eof = Some(part.eof_offset);
            }
        }
    }

    /// The partition's end, as last reported.
    pub fn end(&self, partition: i32) -> Option<i64> {
        self.lock().get(&partition).and_then(|e| e.end)
    }

    /// Forgets a partition (revoked or reassigned): its next end-of-partition is a new one.
    pub fn forget(&self, partition: i32) {
        if let Some(e) = self.lock().get_mut(&partition) {
            e.eof = None;
        }
    }

    fn eof(&self, partition: i32) -> Option<i64> {
        self.lock().get(&partition).and_then(|e| e.eof)
    }
}

/// Whether a consumer that reported end-of-partition has really read everything committed,
/// and if so the offset it is caught up to. A read_committed consumer also reports the end at
/// the last stable offset, which trails the high watermark while a transaction is open or its
/// commit markers are still being written: caught up means at the high watermark.
///
/// The consumer's position is that of the last record it handed over. A partition from which
/// no record reached the application (empty, all aborted, or already consumed to its end by
/// the group) has none; then the furthest of `known` (where the caller started or stands)
/// and the fetcher's offset at the end-of-partition event (from the statistics) counts.
pub fn stable_end<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
    ends: &PartitionEnds,
    known: i64,
) -> Option<i64> {
    use rdkafka::consumer::Consumer;
    let position = consumer
        .position()
        .ok()
        .and_then(|tpl| {
            tpl.find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
        })
        .filter(|p| *p >= 0);
    let at = position.unwrap_or_else(|| known.max(ends.eof(partition).unwrap_or(-1)));
    let (_, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(2))
        .ok()?;
    (at >= 0 && at >= high).then_some(at)
}

/// A client context for readers: quiet end-of-partition events, and the partitions' ends
/// from the statistics.
#[derive(Debug)]
pub struct EndTracking {
    pub topic: String,
    pub ends: PartitionEnds,
}

impl ClientContext for EndTracking {
    fn error(&self, error: KafkaError, reason: &str) {
        log_client_error(error, reason);
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        self.ends.record(&stats, &self.topic);
    }
}

impl rdkafka::consumer::ConsumerContext for EndTracking {}

/// One record as a scan sees it.
#[derive(Debug, Clone, Copy)]
pub struct Scanned<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("reading {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error(
        "reading {topic}: partition {partition} did not reach offset {end} within {waited_secs} s \
         (position {position:?}); an open transaction holds read_committed readers back until it \
         commits, aborts or times out"
    )]
    Stuck {
        topic: String,
        partition: i32,
        position: Option<i64>,
        end: i64,
        waited_secs: u64,
    },
}

/// Reads every partition of the topic from the beginning up to an end offset (exclusive):
/// the one given in `until`, or else the partition's high watermark when the scan starts.
/// `read_committed` chooses the isolation level. Records arrive in offset order per partition.
/// Returns the end offset used for each partition.
pub fn scan(
    settings: &KafkaSettings,
    read_committed: bool,
    until: &std::collections::BTreeMap<i32, i64>,
    timeout: Duration,
    mut f: impl FnMut(Scanned<'_>),
) -> Result<std::collections::BTreeMap<i32, i64>, ScanError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let topic = &settings.topic;
    let err = |source| ScanError::Kafka {
        topic: topic.clone(),
        source,
    };
    let consumer: BaseConsumer<EndTracking> = settings
        .client_config()
        .set("group.id", "landfall-scan")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // Where the fetcher stands at an end-of-partition event, for partitions whose records
        // never reach the reader (all aborted).
        .set("statistics.interval.ms", "200")
        .set(
            "isolation.level",
            if read_committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create_with_context(EndTracking {
            topic: topic.clone(),
            ends: PartitionEnds::default(),
        })
        .map_err(err)?;
    let partitions = wait_for_topic(consumer.client(), settings)? as i32;
    let mut ends = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let end = match until.get(&p) {
            Some(e) => *e,
            None => {
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map_err(err)?
                    .1
            }
        };
        ends.insert(p, end);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    let position = |p: i32| {
        consumer.position().ok().and_then(|tpl| {
            tpl.find_partition(topic, p)
                .and_then(|e| e.offset().to_raw())
        })
    };
    let mut open: std::collections::BTreeSet<i32> = ends
        .iter()
        .filter(|(_, e)| **e > 0)
        .map(|(p, _)| *p)
        .collect();
    let mut eof = std::collections::BTreeSet::new();
    let started = Instant::now();
    while let Some(&first_open) = open.iter().next() {
        if started.elapsed() > timeout {
            return Err(ScanError::Stuck {
                topic: topic.clone(),
                partition: first_open,
                position: position(first_open),
                end: ends[&first_open],
                waited_secs: timeout.as_secs(),
            });
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                // An end-of-partition event can come at the last stable offset, before the
                // last transaction's markers: done only once the position reaches the end.
                open.retain(|p| {
                    !(eof.contains(p)
                        && (position(*p).is_some_and(|o| o >= ends[p])
                            || consumer
                                .context()
                                .ends
                                .eof(*p)
                                .is_some_and(|o| o >= ends[p])))
                });
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof.insert(p);
            }
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(m)) => {
                let p = m.partition();
                eof.remove(&p);
                let end = ends.get(&p).copied().unwrap_or(0);
                if m.offset() >= end {
                    open.remove(&p);
                    continue;
                }
                f(Scanned {
                    partition: p,
                    offset: m.offset(),
                    key: m.key(),
                    value: m.payload(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
                if m.offset() + 1 >= end {
                    open.remove(&p);
                }
            }
        }
    }
    Ok(ends)
}

/// The topic's ID now, for readers that check files against it.
pub fn topic_id_now(settings: &KafkaSettings) -> Result<Option<String>, ScanError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer<QuietEof> = settings
        .client_config()
        .create_with_context(QuietEof)
        .map_err(|source| ScanError::Kafka {
        topic: settings.topic.clone(),
        source,
    })?;
    wait_for_topic(consumer.client(), settings)?;
    Ok(current_topic_id(consumer.client(), settings)?)
}

/// A group's committed offset and its metadata, for every partition of the topic (None where
/// the group has not committed).
pub fn committed_offsets(
    settings: &KafkaSettings,
    group: &str,
) -> Result<std::collections::BTreeMap<i32, Option<(i64, String)>>, ScanError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let err = |source| ScanError::Kafka {
        topic: settings.topic.clone(),
        source,
    };
    let consumer: BaseConsumer<QuietEof> = settings
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create_with_context(QuietEof)
        .map_err(err)?;
    let partitions = wait_for_topic(consumer.client(), settings)? as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&settings.topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(err)?;
    Ok(c.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), Some((o, e.metadata().to_string()))),
            _ => (e.partition(), None),
        })
        .collect())
}

/// A topic's Kafka topic ID (KIP-516), in the base64 form Kafka's tools print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicIdLookup {
    Found(String),
    /// The broker does not give topic IDs (Kafka before 2.8): nothing to record or check.
    NotSupported,
    Missing,
    Failed(String),
}

/// Asks the cluster for `topic`'s topic ID with the Admin API's DescribeTopics, on the
/// handle of any client (rdkafka 0.39 does not wrap that call, so it goes to librdkafka
/// directly). A topic deleted and created again under the same name gets a new ID: that is
/// how a restart tells the old topic's commits and files from the new topic's records.
pub fn topic_id<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> TopicIdLookup {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, CString};

    let Ok(name) = CString::new(topic) else {
        return TopicIdLookup::Failed(format!("topic name {topic:?} has a NUL byte"));
    };
    let cstr = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: librdkafka returns NUL-terminated strings that live as long as the
            // object they come from, which is alive here.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let timeout_ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: every object made here is destroyed before returning, and nothing borrowed from
    // the result event outlives it (strings are copied out first).
    unsafe {
        let rk = client.native_ptr();
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        rd::rd_kafka_DescribeTopics(rk, topics, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let answer = if event.is_null() {
            TopicIdLookup::Failed(format!("no answer to DescribeTopics within {timeout:?}"))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            TopicIdLookup::Failed(cstr(rd::rd_kafka_event_error_string(event)))
        } else {
            let result = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut n = 0usize;
            let descs = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
            if descs.is_null() || n == 0 {
                TopicIdLookup::Failed("DescribeTopics returned no topic".into())
            } else {
                let desc = *descs;
                let err = rd::rd_kafka_TopicDescription_error(desc);
                let code = if err.is_null() {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                } else {
                    rd::rd_kafka_error_code(err)
                };
                match code {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                        let id = rd::rd_kafka_TopicDescription_topic_id(desc);
                        let zero = id.is_null()
                            || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                                && rd::rd_kafka_Uuid_least_significant_bits(id) == 0);
                        if zero {
                            TopicIdLookup::NotSupported
                        } else {
                            TopicIdLookup::Found(cstr(rd::rd_kafka_Uuid_base64str(id)))
                        }
                    }
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                        TopicIdLookup::Missing
                    }
                    _ => TopicIdLookup::Failed(cstr(rd::rd_kafka_error_string(err))),
                }
            }
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_TopicCollection_destroy(topics);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
        answer
    }
}

/// The topic's ID for a run that records it: retried (briefly) while the lookup fails. None
/// when the cluster gives no topic IDs, or cannot answer DescribeTopics at all (older
/// brokers): the run then cannot tell a recreated topic from the old one, and says so.
pub fn current_topic_id<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
) -> Result<Option<String>, KafkaSetupError> {
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * attempt));
        }
        let remaining = settings.connect_timeout.saturating_sub(started.elapsed());
        match topic_id(
            client,
            &settings.topic,
            remaining.clamp(Duration::from_secs(1), Duration::from_secs(10)),
        ) {
            TopicIdLookup::Found(id) => return Ok(Some(id)),
            TopicIdLookup::NotSupported => {
                warn!(topic = %settings.topic, "the cluster gives no topic IDs (Kafka before 2.8): a topic deleted and created again cannot be told from the old one");
                return Ok(None);
            }
            TopicIdLookup::Missing => {
                return Err(KafkaSetupError::TopicMissing {
                    topic: settings.topic.clone(),
                    brokers: settings.brokers.clone(),
                })
            }
            TopicIdLookup::Failed(e) => last = e,
        }
    }
    warn!(topic = %settings.topic, error = %last, "could not read the topic's ID (DescribeTopics); a topic deleted and created again cannot be told from the old one");
    Ok(None)
}
