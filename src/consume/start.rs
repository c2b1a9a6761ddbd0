//! Where a group with no committed offsets starts a partition (`--start-from`). Earliest is
//! the log's beginning, as before. Latest and a time are resolved once, to offsets, and
//! committed (see `commit::commit_start`) before anything is read: a restart, or another
//! member taking the partition over, then continues from that commit instead of resolving
//! again to a different point. The commits carry the start (`from=` in their metadata), so
//! `verify` knows where the output begins.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// The beginning of the log.
    #[default]
    Earliest,
    /// The last stable offset when the partition is first assigned: only what comes after.
    Latest,
    /// The first record whose timestamp is at or after this time (ms since the epoch).
    Time(i64),
}

/// The offsets at which `partitions` start. For a time: the first record at or after it
/// (`offsets_for_times`, read_committed); where no record is that late, and for latest, the
/// last stable offset. None for earliest: the log's beginning needs no commit.
pub fn resolve<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    from: StartFrom,
) -> Result<Option<Vec<(i32, i64)>>, KafkaError> {
    let at = match from {
        StartFrom::Earliest => return Ok(None),
        StartFrom::Latest => Offset::End,
        StartFrom::Time(ms) => Offset::Offset(ms),
    };
    let mut starts = Vec::new();
    let mut past_end = Vec::new();
    for (p, o) in offsets_for(consumer, topic, partitions, at)? {
        match o {
            Some(o) => starts.push((p, o)),
            None => past_end.push(p),
        }
    }
    if !past_end.is_empty() {
        for (p, o) in offsets_for(consumer, topic, &past_end, Offset::End)? {
            let o = o.ok_or(KafkaError::OffsetFetch(
                rdkafka::types::RDKafkaErrorCode::OffsetNotAvailable,
            ))?;
            starts.push((p, o));
        }
    }
    starts.sort_unstable();
    Ok(Some(starts))
}

/// One ListOffsets query: `at` is a timestamp or `Offset::End`. None where the broker has no
/// offset for it (no record that late).
fn offsets_for<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[i32],
    at: Offset,
) -> Result<Vec<(i32, Option<i64>)>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, at)?;
    }
    let found = consumer.offsets_for_times(tpl, Duration::from_secs(10))?;
    Ok(found
        .elements()
        .iter()
        .map(|e| (e.partition(), e.offset().to_raw().filter(|o| *o >= 0)))
        .collect())
}
