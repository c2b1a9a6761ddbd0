//! The assigned partitions' records, taken from a queue of the session's own.
//!
//! `BaseConsumer::poll` hands out one record per call through librdkafka's event interface:
//! it wraps the record in an event behind a reference count, and rust-rdkafka reads the clock
//! around it (`docs/performance.md`, eighth and tenth rounds). So each partition is routed,
//! as it is assigned, to a queue of the session's own, and the poll loop takes its records
//! with `rd_kafka_consume_queue`, one message per call and no event around it. The
//! consumer's queue then carries only events: rebalances, errors, logs and statistics, which
//! the poll loop still serves with `BaseConsumer::poll` after every read, so rebalances are
//! carried out where they were.
//!
//! Each partition's records come through one queue, in order:
//!
//! - A partition is routed before it is assigned, and librdkafka keeps an application's
//!   routing when it starts fetching.
//! - librdkafka clears the routing when it stops fetching the partition, and what it had
//!   queued from the old fetch is discarded (its version is older than the partition's).
//! - A routing that misses (a stop still under way when the partition is assigned again)
//!   sends that whole fetch through the consumer's queue, where `poll` returns its records
//!   as before. The poll loop logs it once and then waits on that queue, not on this one,
//!   while it brings records (a failpoint, `fetch-route`, makes a routing miss for the
//!   tests).
//!
//! End-of-partition events and per-partition errors travel with the records, in order.
//!
//! **Where fetching resumes.** librdkafka pauses every assigned partition during each
//! rebalance and resumes fetching from the partition's position as the application last
//! moved it, so a read must move that position exactly as `poll` does: past each record and
//! transaction marker it hands over or passes, never for an event, and never for what a
//! pause made outdated. `rd_kafka_consume_queue` pops as `poll` does (outdated messages
//! dropped first, then markers served). Two of librdkafka's faster reads do not, and each
//! lost or skipped records in this project's tests (`docs/performance.md`, eighth round):
//!
//! - `rd_kafka_consume_batch_queue` moves the position one past every message it returns,
//!   an end-of-partition event included, whose offset is already the end: after a pause the
//!   fetch resumed one past the log's end
//!   (`edges::a_partition_added_to_a_running_topic_is_consumed_within_seconds`).
//! - `rd_kafka_consume_callback_queue` lets a transaction marker move the position before it
//!   checks the marker's version, so a marker queued behind records a pause had made
//!   outdated moved the position past them, and the next pause resumed there:
//!   `scale::a_rebalance_storm_still_makes_progress` lost 158 records.
//!   `tests/fetch.rs` makes that happen on demand for each read.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;

pub use super::feed::Polled;

/// A queue of the session's own that the assigned partitions' fetches go to, and a handle on
/// the consumer's queue, to see whether events wait there.
pub struct FetchQueue {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    events: NonNull<rdsys::rd_kafka_queue_t>,
}

// SAFETY: librdkafka's queues may be used from any thread.
unsafe impl Send for FetchQueue {}

impl FetchQueue {
    /// A new queue on `consumer`'s client. It must be dropped before the consumer.
    pub fn new<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> FetchQueue {
        let rk = consumer.client().native_ptr();
        // SAFETY: the client pointer is valid while `consumer` lives. A consumer in a group
        // has a consumer queue (rust-rdkafka sends the main queue's events there too).
        let (queue, events) = unsafe {
            (
                rdsys::rd_kafka_queue_new(rk),
                rdsys::rd_kafka_queue_get_consumer(rk),
            )
        };
        FetchQueue {
            queue: NonNull::new(queue).expect("rd_kafka_queue_new returned no queue"),
            events: NonNull::new(events).expect("a consumer without a consumer queue"),
        }
    }

    /// Routes a partition's fetches here; call it before the partition is assigned. Returns
    /// false when librdkafka has no queue for it (its records then come through `poll`).
    pub fn route<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        topic: &str,
        partition: i32,
    ) -> bool {
        let Ok(topic) = CString::new(topic) else {
            return false;
        };
        if crate::ops::failpoint::skip("fetch-route") {
            // As when a stop still under way undoes the routing: said routed, routed nowhere.
            return true;
        }
        // SAFETY: the client pointer is valid while `consumer` lives; the partition's queue
        // handle is released right after forwarding (the forwarding stays on the partition).
        unsafe {
            let rk = consumer.client().native_ptr();
            let partition_queue =
                rdsys::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition);
            if partition_queue.is_null() {
                return false;
            }
            rdsys::rd_kafka_queue_forward(partition_queue, self.queue.as_ptr());
            rdsys::rd_kafka_queue_destroy(partition_queue);
        }
        true
    }

    /// Whether events (or records not routed here) wait on the consumer's queue. `poll` with
    /// no wait serves one event per call, and says nothing when it served a log line or
    /// statistics: the poll loop asks this to know when to stop.
    pub fn events_waiting(&self) -> bool {
        // SAFETY: the handle is ours until drop.
        unsafe { rdsys::rd_kafka_queue_length(self.events.as_ptr()) > 0 }
    }

    /// How many messages wait on the queue.
    pub fn queued(&self) -> usize {
        // SAFETY: the queue is ours until drop.
        unsafe { rdsys::rd_kafka_queue_length(self.queue.as_ptr()) }
    }

    /// Takes up to `most` of what is queued (records, end-of-partition events and errors), one
    /// at a time, waiting up to `wait` for the first, and hands each to `each`, in order. Stops
    /// at the first error `each` returns: what is still queued stays there. Returns how many
    /// it took.
    pub fn read<F, E>(&mut self, wait: Duration, most: usize, mut each: F) -> Result<usize, E>
    where
        F: FnMut(Result<Polled<'_>, KafkaError>) -> Result<(), E>,
    {
        let mut wait_ms = wait.as_millis().min(i32::MAX as u128) as i32;
        let mut taken = 0;
        while taken < most {
            // SAFETY: the queue is ours until drop. librdkafka drops what a pause or a seek
            // made outdated before it returns anything, and moves the partition's position
            // past each record and transaction marker it passes, as `poll` does.
            let m = unsafe { rdsys::rd_kafka_consume_queue(self.queue.as_ptr(), wait_ms) };
            wait_ms = 0;
            let Some(m) = NonNull::new(m) else { break };
            let m = Taken(m);
            taken += 1;
            // SAFETY: the message lives until `m` is dropped, after `each` returns.
            each(unsafe { polled(m.0.as_ref()) })?;
        }
        Ok(taken)
    }
}

/// A message `read` took, destroyed when dropped (after `each`, or as a panic unwinds).
struct Taken(NonNull<rdsys::rd_kafka_message_t>);

impl Drop for Taken {
    fn drop(&mut self) {
        // SAFETY: the message was returned by `rd_kafka_consume_queue` and not destroyed yet.
        unsafe { rdsys::rd_kafka_message_destroy(self.0.as_ptr()) }
    }
}

impl Drop for FetchQueue {
    fn drop(&mut self) {
        // SAFETY: the queue is ours; a partition still routed here after this finds it closed
        // and librdkafka drops what it would have queued.
        unsafe {
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
            rdsys::rd_kafka_queue_destroy(self.events.as_ptr());
        }
    }
}

/// A message as `BorrowedMessage` reads it: an error for an end-of-partition event or a
/// failed fetch, the record otherwise.
///
/// # Safety
/// `m` must be a live message from librdkafka; the result borrows its key and payload.
unsafe fn polled(m: &rdsys::rd_kafka_message_t) -> Result<Polled<'_>, KafkaError> {
    match m.err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR => {}
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => {
            return Err(KafkaError::PartitionEOF(m.partition))
        }
        e => return Err(KafkaError::MessageConsumption(e.into())),
    }
    let bytes = |ptr: *mut c_void, len: usize| {
        // SAFETY: librdkafka's key and payload are `len` bytes, live with the message.
        (!ptr.is_null()).then(|| unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    };
    let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    // SAFETY: `m` is live; librdkafka only reads it and writes `kind`.
    let ts = unsafe { rdsys::rd_kafka_message_timestamp(m, &mut kind) };
    let available = kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
    Ok(Polled {
        partition: m.partition,
        offset: m.offset,
        timestamp_ms: (available && ts != -1).then_some(ts),
        key: bytes(m.key, m.key_len),
        value: bytes(m.payload, m.len),
    })
}
