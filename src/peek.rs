//! A read_committed look at a topic from the beginning to its current end: counts per partition
//! and the first few records. For demos and for checking what readers will see.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{wait_for_topic, KafkaSettings, KafkaSetupError, QuietEof};

#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error(transparent)]
    Setup(#[from] KafkaSetupError),
    #[error("reading {topic}: {source}")]
    Kafka { topic: String, source: KafkaError },
}

/// What a read_committed reader sees.
#[derive(Debug, Default)]
pub struct Peek {
    pub per_partition: BTreeMap<i32, u64>,
    pub first: Vec<(i32, i64, String)>,
}

pub fn peek(kafka: &KafkaSettings, limit: usize) -> Result<Peek, PeekError> {
    let err = |source| PeekError::Kafka {
        topic: kafka.topic.clone(),
        source,
    };
    let consumer: BaseConsumer<QuietEof> = kafka
        .client_config()
        .set("group.id", "landfall-peek")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(QuietEof)
        .map_err(err)?;
    let partitions = wait_for_topic(consumer.client(), kafka)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(&kafka.topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    let mut out = Peek::default();
    let mut done = vec![false; partitions];
    let mut eof = vec![false; partitions];
    let topic_name = kafka.topic.clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    while done.iter().any(|d| !d) && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                for (p, d) in done.iter_mut().enumerate() {
                    if eof[p] && !*d {
                        *d = crate::kafka::at_stable_end(&consumer, &topic_name, p as i32);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => eof[p as usize] = true,
            Some(Err(e)) => return Err(err(e)),
            Some(Ok(m)) => {
                eof[m.partition() as usize] = false;
                *out.per_partition.entry(m.partition()).or_default() += 1;
                if out.first.len() < limit {
                    let text =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                    out.first.push((m.partition(), m.offset(), text));
                }
            }
        }
    }
    Ok(out)
}
