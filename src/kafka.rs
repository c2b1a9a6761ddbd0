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

/// Logs a librdkafka client error, except end-of-partition, which readers expect.
pub fn log_client_error(error: KafkaError, reason: &str) {
    let eof = matches!(
        error,
        KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
    );
    if !eof {
        warn!(error = %error, reason, "librdkafka error");
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
        let last_error = match client.fetch_metadata(Some(&settings.topic), attempt) {
            Ok(md) => match md.topics().iter().find(|t| t.name() == settings.topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Ok(t.partitions().len());
                }
                Some(t) => match t.error() {
                    Some(e)
                        if RDKafkaErrorCode::from(e)
                            == RDKafkaErrorCode::UnknownTopicOrPartition =>
                    {
                        return Err(KafkaSetupError::TopicMissing {
                            topic: settings.topic.clone(),
                            brokers: settings.brokers.clone(),
                        });
                    }
                    Some(e) => format!("topic metadata error {:?}", RDKafkaErrorCode::from(e)),
                    None => "topic has no partitions yet".to_string(),
                },
                None => "topic absent from metadata".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if started.elapsed() >= settings.connect_timeout {
            return Err(KafkaSetupError::Unreachable {
                brokers: settings.brokers.clone(),
                waited_secs: started.elapsed().as_secs(),
                last_error,
            });
        }
        warn!(brokers = %settings.brokers, error = %last_error, "Kafka not ready; retrying");
        std::thread::sleep(backoff.min(settings.connect_timeout.saturating_sub(started.elapsed())));
        backoff = (backoff * 2).min(Duration::from_secs(2));
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
                return Ok(());
            }
            Err(e) if started.elapsed() < settings.connect_timeout => {
                warn!(error = %e, "creating the topic failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(KafkaSetupError::Unreachable {
                    brokers: settings.brokers.clone(),
                    waited_secs: started.elapsed().as_secs(),
                    last_error: e.to_string(),
                })
            }
        }
    }
}

/// Whether a consumer that reported end-of-partition has really read everything committed:
/// its position is at the high watermark. A read_committed consumer also reports the end at
/// the last stable offset, which trails the high watermark while a transaction is open or its
/// commit markers are still being written.
pub fn at_stable_end<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> bool {
    use rdkafka::consumer::Consumer;
    let position = consumer.position().ok().and_then(|tpl| {
        tpl.find_partition(topic, partition)
            .and_then(|e| e.offset().to_raw())
    });
    let high = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(2))
        .ok()
        .map(|(_, h)| h);
    matches!((position, high), (Some(p), Some(h)) if p >= h)
}
