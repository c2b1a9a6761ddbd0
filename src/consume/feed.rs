//! The hand-off between the poll thread and the pipeline worker.
//!
//! The poll thread only pops records from librdkafka and copies them into a batch; a worker
//! thread decodes, windows and lands them. So the two halves of the per-record work run on two
//! cores. Every decision that depends on what has been processed (a checkpoint, a commit, a
//! rebalance, "caught up") first calls [`Feed::drain`], which hands over the batch being filled
//! and waits until the worker has processed everything it was given. After a drain the
//! pipeline has seen exactly the records polled so far, as if there were one thread.

use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rdkafka::message::{BorrowedMessage, Message};

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
}

struct Meta {
    partition: i32,
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Range<usize>>,
    value: Option<Range<usize>>,
}

impl Batch {
    pub fn push(&mut self, m: &BorrowedMessage<'_>) {
        let mut copy = |b: Option<&[u8]>| {
            b.map(|b| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(b);
                start..self.bytes.len()
            })
        };
        let key = copy(m.key());
        let value = copy(m.payload());
        self.records.push(Meta {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
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
    }

    fn records(&self) -> impl Iterator<Item = ConsumedRecord<'_>> {
        let slice = |r: &Option<Range<usize>>| r.clone().map(|r| &self.bytes[r]);
        self.records.iter().map(move |m| ConsumedRecord {
            partition: m.partition,
            offset: m.offset,
            key: slice(&m.key),
            value: slice(&m.value),
            timestamp_ms: m.timestamp_ms,
        })
    }
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
    pub fn push(&self, m: &BorrowedMessage<'_>) -> Result<bool, PipelineError> {
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
        let sent = f.to_worker.as_ref().map(|tx| tx.send(batch));
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

/// Processes one batch, then lands what is queued if `last` says no batch is waiting after
/// it. A panic (a bug: no input should cause one) becomes an error like any
/// other, so the poll thread stops instead of waiting forever for a worker that is gone, and
/// the pipeline is poisoned: nothing is committed past what landed.
fn process(
    pipeline: &Mutex<Pipeline>,
    batch: &Batch,
    last: impl Fn() -> bool,
) -> Result<(), PipelineError> {
    let run = std::panic::AssertUnwindSafe(|| {
        let mut pipeline = lock(pipeline);
        crate::ops::failpoint::panic_at("worker-panic");
        batch.records().try_for_each(|r| pipeline.handle(r))?;
        if last() {
            pipeline.flush()?;
        }
        Ok(())
    });
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        lock(pipeline).poison();
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into());
        Err(PipelineError::WorkerPanic(what))
    })
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
