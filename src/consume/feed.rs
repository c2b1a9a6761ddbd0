//! The hand-off between the poll thread and the pipeline worker.
//!
//! The poll thread only pops records from librdkafka and copies them into a batch; a worker
//! thread decodes, windows and lands them. So the two halves of the per-record work run on two
//! cores. Every decision that depends on what has been processed (a checkpoint, a commit, a
//! rebalance, "caught up") first calls [`Feed::drain`], which hands over the batch being filled
//! and waits until the worker has processed everything it was given. After a drain the
//! pipeline has seen exactly the records polled so far, as if there were one thread.
//!
//! When the worker is behind (its queue is full, as while it lands a group of files), the
//! poll thread would only wait. It decodes the batch instead, before it waits: decoding is a
//! pure function of the record and the limits, so the worker then windows the same events it
//! would have decoded itself, and spends its time on what only it can do.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rdkafka::message::{BorrowedMessage, Message};

use crate::consume::decode::{decode_fields, DecodeError, EventFields, Limits};
use crate::consume::pipeline::{ConsumedRecord, Pipeline, PipelineError};

/// Records per batch: large enough that the hand-off costs little per record, small enough
/// that a drain waits for little.
pub const BATCH_RECORDS: usize = 2048;
/// Batches queued for the worker, beyond the one it is processing.
const QUEUED_BATCHES: usize = 2;

/// Records copied out of librdkafka: keys and values side by side in one buffer.
#[derive(Default)]
pub struct Batch {
    bytes: Vec<u8>,
    records: Vec<Meta>,
    /// Each record's value decoded, in order, when the poll thread decoded the batch; empty
    /// when the worker decodes them itself.
    decoded: Vec<Result<EventFields, DecodeError>>,
}

struct Meta {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

/// One record as librdkafka handed it over, borrowed until the poll loop takes the next.
pub struct Polled<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

impl<'a> From<&'a BorrowedMessage<'_>> for Polled<'a> {
    fn from(m: &'a BorrowedMessage<'_>) -> Self {
        Polled {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key(),
            value: m.payload(),
        }
    }
}

impl Batch {
    pub fn push(&mut self, m: Polled<'_>) {
        let mut copy = |b: Option<&[u8]>| {
            b.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(m.key);
        let value = copy(m.value);
        self.records.push(Meta {
            partition: m.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key,
            value,
        });
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
        self.decoded.clear();
    }

    /// Decodes every record's value, as the pipeline would.
    fn decode(&mut self, limits: &Limits) {
        let Batch {
            bytes,
            records,
            decoded,
        } = self;
        decoded.clear();
        decoded.extend(
            records
                .iter()
                .map(|m| decode_fields(slice(bytes, &m.value), m.timestamp_ms, limits)),
        );
    }

    fn records(&self) -> impl Iterator<Item = ConsumedRecord<'_>> {
        self.records
            .iter()
            .enumerate()
            .map(move |(i, m)| ConsumedRecord {
                partition: m.partition,
                offset: m.offset,
                key: slice(&self.bytes, &m.key),
                value: slice(&self.bytes, &m.value),
                timestamp_ms: m.timestamp_ms,
                decoded: self.decoded.get(i),
            })
    }
}

/// A key's or value's bytes in a batch's buffer.
fn slice<'a>(bytes: &'a [u8], range: &Option<Range<usize>>) -> Option<&'a [u8]> {
    range.clone().map(|r| &bytes[r])
}

/// What the worker reports back: batches not yet processed, and its first error.
#[derive(Default)]
struct Progress {
    pending: usize,
    error: Option<PipelineError>,
}

/// The poll thread's side of the hand-off.
pub struct Feed {
    filling: Mutex<Filling>,
    /// The pipeline's limits, for decoding a batch here when the worker is behind.
    limits: Limits,
    progress: Arc<(Mutex<Progress>, Condvar)>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

struct Filling {
    batch: Batch,
    to_worker: Option<SyncSender<Batch>>,
    recycled: Receiver<Batch>,
}

impl Feed {
    /// Starts the worker, which processes batches into `pipeline`.
    pub fn start(pipeline: Arc<Mutex<Pipeline>>) -> std::io::Result<Feed> {
        let limits = lock(&pipeline).limits();
        let (to_worker, batches) = sync_channel::<Batch>(QUEUED_BATCHES);
        let (recycle, recycled) = sync_channel::<Batch>(QUEUED_BATCHES + 2);
        let progress = Arc::new((Mutex::new(Progress::default()), Condvar::new()));
        let report = progress.clone();
        let worker = std::thread::Builder::new()
            .name("landfall-pipeline".into())
            .spawn(move || {
                // After an error the pipeline is poisoned; later batches are not processed.
                let mut failed = false;
                for mut batch in batches {
                    // The last batch handed over so far: what is queued to land lands now.
                    // While more are waiting (a catch-up), it keeps growing into one larger
                    // group (bounded, see `pipeline::land`).
                    let last = || lock(&report.0).pending <= 1;
                    let result = if failed {
                        Ok(())
                    } else {
                        process(&pipeline, &batch, last)
                    };
                    failed |= result.is_err();
                    batch.clear();
                    let _ = recycle.try_send(batch);
                    let (lock_progress, done) = &*report;
                    let mut p = lock(lock_progress);
                    p.pending -= 1;
                    if let Err(e) = result {
                        p.error.get_or_insert(e);
                    }
                    done.notify_all();
                }
            })?;
        Ok(Feed {
            limits,
            filling: Mutex::new(Filling {
                batch: Batch::default(),
                to_worker: Some(to_worker),
                recycled,
            }),
            progress,
            worker: Mutex::new(Some(worker)),
        })
    }

    /// Copies a record into the batch being filled; hands the batch over when it is full.
    /// Returns whether it handed one over.
    pub fn push(&self, m: Polled<'_>) -> Result<bool, PipelineError> {
        let mut f = lock(&self.filling);
        f.batch.push(m);
        if f.batch.len() < BATCH_RECORDS {
            return Ok(false);
        }
        self.hand_over(&mut f)?;
        Ok(true)
    }

    fn hand_over(&self, f: &mut Filling) -> Result<(), PipelineError> {
        self.check()?;
        if f.batch.is_empty() {
            return Ok(());
        }
        let next = f.recycled.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut f.batch, next);
        lock(&self.progress.0).pending += 1;
        let sent = f.to_worker.as_ref().map(|tx| match tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(mut batch)) => {
                batch.decode(&self.limits);
                tx.send(batch).map_err(|_| ())
            }
            Err(TrySendError::Disconnected(_)) => Err(()),
        });
        if !matches!(sent, Some(Ok(()))) {
            lock(&self.progress.0).pending -= 1;
            return Err(PipelineError::WorkerStopped);
        }
        Ok(())
    }

    /// Hands over the batch being filled and waits until the worker has processed everything.
    /// Returns the worker's error, if it had one.
    pub fn drain(&self) -> Result<(), PipelineError> {
        {
            let mut f = lock(&self.filling);
            self.hand_over(&mut f)?;
        }
        let (progress, done) = &*self.progress;
        let mut p = lock(progress);
        while p.pending > 0 {
            p = done.wait(p).unwrap_or_else(|e| e.into_inner());
        }
        match p.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The worker's error, if it had one, without waiting.
    fn check(&self) -> Result<(), PipelineError> {
        match lock(&self.progress.0).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops the worker after it has processed what it was given (records still being
    /// filled are dropped: nothing was committed for them).
    pub fn stop(&self) {
        lock(&self.filling).to_worker.take();
        if let Some(worker) = lock(&self.worker).take() {
            let _ = worker.join();
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes one batch, then sends what is queued to land if `last` says no batch is waiting
/// after it (see `Pipeline::end_batch`). A panic (a bug: no input should cause one) becomes
/// an error like any other, so the poll thread stops instead of waiting forever for a worker
/// that is gone, and the pipeline is poisoned: nothing is committed past what landed.
fn process(
    pipeline: &Mutex<Pipeline>,
    batch: &Batch,
    last: impl Fn() -> bool,
) -> Result<(), PipelineError> {
    let run = std::panic::AssertUnwindSafe(|| {
        let mut pipeline = lock(pipeline);
        crate::ops::failpoint::panic_at("worker-panic");
        batch.records().try_for_each(|r| pipeline.handle(r))?;
        pipeline.end_batch(last())?;
        Ok(())
    });
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        lock(pipeline).poison();
        Err(PipelineError::WorkerPanic(crate::error::panic_message(
            &*panic,
        )))
    })
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch decoded on the poll thread hands each record its own result, in order, as
    /// the worker would have decoded it.
    #[test]
    fn a_decoded_batch_hands_each_record_its_own_result() {
        let values: [&[u8]; 3] = [
            br#"{"viewId":"a","startTimestamp":"2024-09-13T06:00:01.000Z","endTimestamp":"2024-09-13T06:00:02.000Z","bannerId":1,"campaignId":10}"#,
            b"not json",
            br#"{"viewId":"b","startTimestamp":"2024-09-13T06:00:03.000Z","endTimestamp":"2024-09-13T06:00:09.000Z","bannerId":1,"campaignId":20}"#,
        ];
        let mut batch = Batch::default();
        for (i, v) in values.iter().enumerate() {
            let start = batch.bytes.len();
            batch.bytes.extend_from_slice(v);
            batch.records.push(Meta {
                partition: 0,
                offset: i as i64,
                timestamp_ms: Some(1_726_207_200_000),
                key: None,
                value: Some(start..batch.bytes.len()),
            });
        }
        let limits = Limits {
            max_future_skew_ms: 3_600_000,
            max_duration_ms: 86_400_000,
        };
        assert!(batch.records().all(|r| r.decoded.is_none()));
        batch.decode(&limits);
        for (r, v) in batch.records().zip(values) {
            let want = decode_fields(Some(v), Some(1_726_207_200_000), &limits);
            assert_eq!(r.decoded, Some(&want));
        }
        assert_eq!(
            batch
                .records()
                .filter_map(|r| r.decoded?.as_ref().ok())
                .map(|e| e.campaign_id)
                .collect::<Vec<_>>(),
            [10, 20]
        );
        batch.clear();
        assert!(batch.decoded.is_empty());
    }
}
