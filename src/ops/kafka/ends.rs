//! Partition ends from librdkafka's statistics: the lag metric, and "caught up" for a
//! read_committed reader.

use super::*;

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

    pub(super) fn eof(&self, partition: i32) -> Option<i64> {
        self.lock().get(&partition).and_then(|e| e.eof)
    }
}

/// Whether a consumer that reported end-of-partition has really read everything committed,
/// and if so the offset it is caught up to: at least the partition's end as read_committed
/// sees it, the last stable offset (so a transaction left open by a producer that died does
/// not hold it back; docs/exactly-once.md, "Open transactions"). That end comes from the
/// statistics, or before the first of them from the last fetch response's high watermark;
/// neither needs a request, and a value a little old only delays "caught up": the offset
/// returned never depends on it.
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
    let end = ends
        .end(partition)
        .or_else(|| last_fetched_high(consumer.client(), topic, partition))?;
    (at >= 0 && at >= end).then_some(at)
}

/// The partition's high watermark as the last fetch response gave it: librdkafka keeps it
/// from every response, so reading it sends no request. (Asking the broker instead, with
/// `fetch_watermarks`, waits behind the fetch long-poll on the same connection, up to
/// `fetch.wait.max.ms` per partition, and at the end of a drain over many partitions that
/// added up to about a second in one tick.) None before the first response.
fn last_fetched_high<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    use rdkafka::bindings as rd;
    let name = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client outlives the call; librdkafka only reads the name and writes the two
    // integers.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            name.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
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

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::ops::kafka::log_client_line(level, fac, message);
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        self.ends.record(&stats, &self.topic);
    }
}

impl rdkafka::consumer::ConsumerContext for EndTracking {}
