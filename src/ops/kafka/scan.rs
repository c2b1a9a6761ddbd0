//! Reading a topic from the beginning to a fixed end, for `verify`, `peek` and the tests.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::*;

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
        "reading the offsets group {group} committed on {topic}: {source}; the group's \
         coordinator did not answer (is a broker down, or the cluster below min.insync.replicas?)"
    )]
    Committed {
        topic: String,
        group: String,
        source: Box<KafkaError>,
    },
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
    let topic = &settings.topic;
    let err = |source| refused_or(settings, "", source);
    let consumer = scan_consumer(settings, read_committed).map_err(err)?;
    let ends = assign_from_start(&consumer, settings, until)?;
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

/// A consumer for a scan, outside any group's commits, with the end tracking that tells when
/// a partition whose last records were aborted is done.
fn scan_consumer(
    settings: &KafkaSettings,
    read_committed: bool,
) -> Result<BaseConsumer<EndTracking>, KafkaError> {
    settings
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
            topic: settings.topic.clone(),
            ends: PartitionEnds::default(),
        })
}

/// Assigns every partition from its beginning; returns each partition's end: `until`'s, or
/// else its high watermark now.
fn assign_from_start(
    consumer: &BaseConsumer<EndTracking>,
    settings: &KafkaSettings,
    until: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, ScanError> {
    let topic = &settings.topic;
    let err = |source| ScanError::Kafka {
        topic: topic.clone(),
        source,
    };
    let partitions = wait_for_topic_polled(consumer, settings)? as i32;
    let mut ends = std::collections::BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        let end = match until.get(&p) {
            Some(e) => *e,
            None => high_watermark(consumer, topic, p, LEADER_CHANGE_WAIT).map_err(err)?,
        };
        ends.insert(p, end);
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(err)?;
    }
    consumer.assign(&tpl).map_err(err)?;
    Ok(ends)
}

/// How long a scan keeps asking for a partition's end while its leadership changes.
const LEADER_CHANGE_WAIT: Duration = Duration::from_secs(45);

/// A partition's high watermark, from its leader. Right after a leader election the new leader
/// answers OFFSET_NOT_AVAILABLE until its high watermark has caught up, and a client with old
/// metadata hears NOT_LEADER_OR_FOLLOWER or LEADER_NOT_AVAILABLE: Kafka calls these retriable,
/// so they are asked again until `wait` has passed. Any other error, or the last of these, is
/// returned. (`verify` run during a broker outage failed on the first such answer.)
fn high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    wait: Duration,
) -> Result<i64, KafkaError> {
    let deadline = Instant::now() + wait;
    loop {
        match consumer.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok((_, high)) => return Ok(high),
            Err(e) if leadership_changing(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => return Err(e),
        }
    }
}

fn leadership_changing(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::OffsetNotAvailable
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::FencedLeaderEpoch
                | RDKafkaErrorCode::UnknownLeaderEpoch
        )
    )
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
    wait_for_topic_polled(&consumer, settings)?;
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
    let partitions = wait_for_topic_polled(&consumer, settings)? as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(&settings.topic, p);
    }
    let c = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map_err(|e| match refused_or(settings, group, e) {
            ScanError::Kafka { topic, source } => ScanError::Committed {
                topic,
                group: group.to_string(),
                source: Box::new(source),
            },
            other => other,
        })?;
    Ok(c.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => (e.partition(), Some((o, e.metadata().to_string()))),
            _ => (e.partition(), None),
        })
        .collect())
}

/// A refusal by the brokers behind `source` (a missing ACL, a failed login), or else the
/// error as it is.
fn refused_or(settings: &KafkaSettings, group: &str, source: KafkaError) -> ScanError {
    let doing = super::Doing::Reading { group };
    match super::refusal::behind(Some(&source), settings, doing) {
        Some(r) => ScanError::Setup(r.into()),
        None => ScanError::Kafka {
            topic: settings.topic.clone(),
            source,
        },
    }
}
