//! The ordering that makes it exactly-once: decode, enrich and window each record; land every
//! window the watermark closes (and the rejects cut with it) before anything else; then
//! checkpoint to sled and flush; only then commit to Kafka the lowest offset still needed,
//! with the partition's progress at that offset as commit metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::consume::commit::{CommitMeta, CommitPoint};
use crate::consume::decode::{decode_fields, DecodeError, EventFields, Limits, RejectReason};
use crate::consume::enrich::CampaignTable;
use crate::consume::reject::{RejectBuffer, RejectRecord};
use crate::consume::sink::{Landed, Sink, SinkError, TableChange};
use crate::consume::state::{PartitionCheckpoint, StateError, StateStore};
use crate::consume::window::{
    ClosedWindow, IdleMark, PartitionWindows, Placement, Progress, WindowConfig,
};
use crate::identity::{Identity, IdentityError, Settings};
use crate::ops::kafka::KafkaSettings;
use crate::ops::metrics::{self, PartitionMetrics};

mod idle;
mod land;
mod partition;
mod recover;
#[cfg(test)]
mod tests;

pub use partition::{PartitionState, TableChangeState};

#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub kafka: KafkaSettings,
    pub group: String,
    pub instance_id: Option<String>,
    pub assignment_strategy: crate::ops::kafka::AssignmentStrategy,
    /// Where a partition the group never committed starts.
    pub start_from: crate::consume::start::StartFrom,
    pub campaigns: PathBuf,
    /// Where window files land: a local directory or an object-store prefix.
    pub output: crate::store::Root,
    pub rejects: crate::store::Root,
    /// `--assume-single-writer`: an object store that failed the conditional-write probe is
    /// used anyway, looking up each file before it is written.
    pub assume_single_writer: bool,
    pub state_dir: PathBuf,
    pub window: WindowConfig,
    pub idle_timeout: Duration,
    pub max_future_skew_ms: i64,
    /// Views longer than this are rejected (`duration_too_long`).
    pub max_duration_ms: i64,
    /// `--accept-campaigns-change`: a campaign table other than the one the group's commits
    /// name applies to the windows that land from now on; files landed with the old one stay.
    pub accept_campaigns_change: bool,
    pub checkpoint_interval: Duration,
    pub exit_on_idle: bool,
    /// `--fsync`: how a group of landed files is made durable on local disk.
    pub fsync: crate::consume::sink::FsyncScope,
    /// Benchmark only: no fsync, no sled flush, no Kafka commits.
    pub unsafe_no_durability: bool,
    /// Where /metrics, /healthz and /readyz are served, if anywhere.
    pub http_addr: Option<std::net::SocketAddr>,
}

impl ConsumeConfig {
    /// The settings that change what lands. Their signature is stored with every commit and
    /// in every footer; a restart with other values would change the output, so it is refused.
    pub fn settings(&self) -> Settings {
        Settings {
            window: self.window,
            limits: self.limits(),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_future_skew_ms: self.max_future_skew_ms,
            max_duration_ms: self.max_duration_ms,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("committing offsets to Kafka kept failing for {limit_secs} s: {0}", limit_secs = COMMIT_FAILURE_LIMIT.as_secs())]
    Commit(rdkafka::error::KafkaError),
    #[error(
        "partition {partition} of {topic} has committed offset {offset} in group {group:?} but \
         its metadata {meta:?} was not written by Landfall; refusing to guess a restart point \
         (use a new --group)"
    )]
    ForeignCommit {
        topic: String,
        partition: i32,
        offset: i64,
        group: String,
        meta: String,
    },
    #[error("could not fetch the group's committed offsets from Kafka")]
    CommittedOffsetsUnavailable,
    #[error("setting where partition {partition} starts: {source}")]
    StartOffset {
        partition: i32,
        source: rdkafka::error::KafkaError,
    },
    #[error("assigning partitions: {0}")]
    Assign(rdkafka::error::KafkaError),
    #[error(
        "the committed offset is no longer in the log ({0}); the records between it and the log \
         start were deleted by retention before they landed. Landfall does not reset silently: \
         reset the group's offsets explicitly (kafka-consumer-groups --reset-offsets) to accept \
         the loss"
    )]
    OffsetGone(rdkafka::error::KafkaError),
    #[error(transparent)]
    Refused(#[from] crate::ops::kafka::Refusal),
    #[error("the pipeline worker has stopped")]
    WorkerStopped,
    #[error(transparent)]
    Identity(Box<IdentityError>),
    #[error("the pipeline worker panicked: {0}; nothing was committed past the last landed file")]
    WorkerPanic(String),
    #[error(
        "starting a thread to land files: {0}; nothing was committed past the last landed file"
    )]
    LandingThread(std::io::Error),
}

impl From<IdentityError> for PipelineError {
    fn from(e: IdentityError) -> Self {
        PipelineError::Identity(Box::new(e))
    }
}

/// Counts for the run summary and the metrics.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub records: u64,
    pub counted: u64,
    pub unknown_campaign: u64,
    pub rejects: BTreeMap<&'static str, u64>,
    pub windows_landed: u64,
    pub windows_already_there: u64,
    pub reject_files_landed: u64,
    /// Groups the files landed in (see `sink::group`).
    pub groups: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub commits: u64,
}

impl Totals {
    fn rejected(&mut self, reason: RejectReason) {
        *self.rejects.entry(reason.as_str()).or_default() += 1;
    }
}

/// The per-record work and the landing order, independent of how records arrive.
pub struct Pipeline {
    cfg: ConsumeConfig,
    /// Shared with the thread a group lands on.
    sink: Arc<Sink>,
    store: StateStore,
    table: Arc<CampaignTable>,
    parts: BTreeMap<i32, PartitionState>,
    totals: Totals,
    last_checkpoint: Instant,
    dirty: bool,
    commit_failing_since: Option<Instant>,
    /// Set when processing failed part-way (a file did not land): the state in memory may have
    /// moved past data that is not on disk, so it is never checkpointed or committed again.
    poisoned: bool,
    /// Closed windows and cut rejects waiting to land as one group (see `land`).
    queue: land::Queue,
    /// The group landing on its own thread, if one is.
    in_flight: Option<land::InFlight>,
}

impl Drop for Pipeline {
    /// A group still in flight finishes landing before the pipeline is gone (nothing is
    /// committed for it; a restart finds its files, as after a crash).
    fn drop(&mut self) {
        if let Some(thread) = self.in_flight.take() {
            let _ = thread.join();
        }
    }
}

/// How long offset commits may keep failing before the consumer gives up.
pub const COMMIT_FAILURE_LIMIT: Duration = Duration::from_secs(120);

/// One Kafka record, borrowed.
pub struct ConsumedRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
    /// The value already decoded with this pipeline's limits (by the poll thread, while the
    /// worker was behind), or None to decode it here: the same pure function either way.
    pub decoded: Option<&'a Result<EventFields, DecodeError>>,
}

impl Pipeline {
    /// This run's identity for `cfg`'s topic, whose topic ID is `topic_id` (None when the
    /// cluster gives none), with `table`.
    pub fn identity(
        cfg: &ConsumeConfig,
        table: &CampaignTable,
        topic_id: Option<String>,
    ) -> Identity {
        Identity {
            topic: cfg.kafka.topic.clone(),
            topic_id,
            settings: cfg.settings(),
            campaigns_sha256: table.checksum.clone(),
        }
    }

    pub fn new(
        cfg: ConsumeConfig,
        table: Arc<CampaignTable>,
        store: StateStore,
        identity: Identity,
    ) -> Self {
        let sink = Arc::new(Sink {
            report: cfg.output.clone(),
            rejects: cfg.rejects.clone(),
            identity,
            table: table.clone(),
            sync: !cfg.unsafe_no_durability,
            fsync_scope: cfg.fsync,
            look_first: cfg.assume_single_writer,
            // Local files are written one after another and fsynced together (see
            // `sink::group`); PUTs go out several at once.
            concurrency: match cfg.output {
                crate::store::Root::Local(_) => 1,
                crate::store::Root::Object(_) => crate::consume::sink::OBJECT_CONCURRENCY,
            },
        });
        Pipeline {
            cfg,
            sink,
            store,
            table,
            parts: BTreeMap::new(),
            totals: Totals::default(),
            last_checkpoint: Instant::now(),
            dirty: false,
            commit_failing_since: None,
            poisoned: false,
            queue: land::Queue::default(),
            in_flight: None,
        }
    }

    /// Takes over a newly assigned partition, starting from `st` (see `recover`).
    pub fn assign(&mut self, partition: i32, st: PartitionState) {
        self.parts.insert(partition, st);
    }

    /// Lets go of a revoked partition (checkpointed and committed before, if it could be).
    pub fn release(&mut self, partition: i32) {
        self.parts.remove(&partition);
    }

    /// The partitions assigned, in order.
    pub fn partitions(&self) -> Vec<i32> {
        self.parts.keys().copied().collect()
    }

    /// The next offset to process in `partition`, if it is assigned (negative: from the start).
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.parts.get(&partition).map(|st| st.position)
    }

    /// Sets the consumer-lag gauge of every assigned partition from `lag(partition, position)`.
    pub fn update_lag(&self, lag: impl Fn(i32, i64) -> Option<i64>) {
        for (p, st) in &self.parts {
            if let Some(v) = lag(*p, st.position) {
                st.metrics.lag.set(v);
            }
        }
    }

    /// What was last committed for `partition` (or found committed at its assignment).
    pub fn last_committed(&self, partition: i32) -> Option<&CommitPoint> {
        self.parts.get(&partition)?.committed.as_ref()
    }

    /// The topic consumed.
    pub fn topic(&self) -> &str {
        &self.cfg.kafka.topic
    }

    /// Whether files, state and offsets are made durable (always, except in the benchmark).
    pub fn durable(&self) -> bool {
        !self.cfg.unsafe_no_durability
    }

    /// The state store's size on disk, in bytes.
    pub fn state_size(&self) -> u64 {
        self.store.size_on_disk()
    }

    /// The run's counts so far.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// This run's identity: topic, topic ID, settings, campaign table.
    pub fn run_identity(&self) -> &Identity {
        &self.sink.identity
    }

    /// Marks the pipeline as having failed part-way: nothing is checkpointed or committed
    /// again (see `checkpoint`).
    /// The limits records are decoded with.
    pub fn limits(&self) -> Limits {
        self.cfg.limits()
    }

    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Processes one record. After an error the pipeline is poisoned: see `checkpoint`.
    pub fn handle(&mut self, r: ConsumedRecord<'_>) -> Result<(), PipelineError> {
        let result = self.handle_record(r);
        self.poisoned |= result.is_err();
        result
    }

    fn handle_record(&mut self, r: ConsumedRecord<'_>) -> Result<(), PipelineError> {
        self.repeat_idle_closes(r.partition, r.offset)?;
        let limits = self.cfg.limits();
        let Some(st) = self.parts.get_mut(&r.partition) else {
            warn!(
                partition = r.partition,
                offset = r.offset,
                "record for an unassigned partition ignored"
            );
            return Ok(());
        };
        if st.position >= 0 && r.offset < st.position {
            debug!(
                partition = r.partition,
                offset = r.offset,
                "record before the position ignored"
            );
            return Ok(());
        }
        st.caught_up_since = None;
        st.idle_closed = false;
        self.totals.records += 1;
        self.dirty = true;
        let progress_before = st.windows.progress();
        let decoded = match r.decoded {
            Some(d) => d.clone(),
            None => decode_fields(r.value, r.timestamp_ms, &limits),
        };
        let closed = match decoded {
            Err(e) => {
                self.totals.rejected(e.reason);
                st.metrics.invalid.inc();
                metrics::consumer().invalid(e.reason);
                let reject = reject_record(&r, e.reason, e.detail, e.event_ms, None);
                st.rejects.push(reject, progress_before.clone());
                Vec::new()
            }
            Ok(ev) => count_event(st, &mut self.totals, &self.table, &r, &ev, &progress_before),
        };
        st.position = r.offset + 1;
        // Rejects are cut whenever the watermark passes a window boundary, whether or not a
        // window was open there. A replay from a commit point may lack windows whose records
        // all lie before it, but its watermark moves exactly as the first run's did, so it
        // cuts at the same offsets and never lands a reject in a second, differently cut file.
        let size = self.cfg.window.size_ms;
        let crossed = match (progress_before.watermark_ms, st.windows.watermark_ms()) {
            (Some(before), Some(after)) => after.div_euclid(size) > before.div_euclid(size),
            (None, Some(_)) => true,
            _ => false,
        };
        if !closed.is_empty() || (crossed && !st.rejects.items.is_empty()) {
            self.land(r.partition, closed, r.offset + 1, Instant::now())?;
        }
        Ok(())
    }

    /// Lands every closed window and cut of rejects still waiting, as one group, and waits
    /// until it and the group before it have landed: before anything is checkpointed, or
    /// decided on what landed. After an error the pipeline is poisoned.
    pub fn flush(&mut self) -> Result<(), PipelineError> {
        let result = self.send_queued().and_then(|()| self.settle());
        self.poisoned |= result.is_err();
        result
    }

    /// The end of a batch of records: collects a group that has finished landing, and when
    /// no batch waits after this one (`last`), sends what is queued to land, without waiting
    /// for it (see `land`). After an error the pipeline is poisoned.
    pub fn end_batch(&mut self, last: bool) -> Result<(), PipelineError> {
        let result = if last {
            self.send_queued()
        } else {
            self.collect_landed()
        };
        self.poisoned |= result.is_err();
        result
    }

    pub fn checkpoint_due(&self, now: Instant) -> bool {
        self.dirty && now.duration_since(self.last_checkpoint) >= self.cfg.checkpoint_interval
    }

    /// Checkpoints the given partitions (all when `only` is None) to sled, flushes, and
    /// returns the commit points to send to Kafka. A poisoned pipeline checkpoints nothing:
    /// the last commit stays the restart point (I4, I6).
    pub fn checkpoint(
        &mut self,
        only: Option<&[i32]>,
    ) -> Result<Vec<(i32, CommitPoint)>, PipelineError> {
        if self.poisoned {
            warn!("not checkpointing or committing: an earlier error left data unwritten");
            return Ok(Vec::new());
        }
        // Durable, then state, then commit: what closed lands before the state moves past it.
        self.flush()?;
        let chosen: Vec<(i32, PartitionCheckpoint)> = self
            .parts
            .iter()
            .filter(|(p, st)| only.is_none_or(|o| o.contains(p)) && st.position >= 0)
            .map(|(p, st)| (*p, st.checkpoint(&self.sink.identity)))
            .collect();
        self.last_checkpoint = Instant::now();
        self.dirty = false;
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        if !self.cfg.unsafe_no_durability {
            let timer = metrics::consumer().checkpoint.start_timer();
            self.store
                .checkpoint(&self.cfg.kafka.topic, chosen.iter().map(|(p, cp)| (*p, cp)))?;
            timer.observe_duration();
        }
        Ok(chosen.into_iter().map(|(p, cp)| (p, cp.commit)).collect())
    }

    /// A commit failed (broker down, coordinator moving). Fatal only once commits have been
    /// failing for `COMMIT_FAILURE_LIMIT`.
    pub fn commit_failed(&mut self, e: rdkafka::error::KafkaError) -> Result<(), PipelineError> {
        let since = *self.commit_failing_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= COMMIT_FAILURE_LIMIT {
            return Err(PipelineError::Commit(e));
        }
        warn!(error = %e, failing_for_secs = since.elapsed().as_secs(), "offset commit failed; retrying at the next checkpoint");
        self.dirty = true;
        Ok(())
    }

    /// Sets the per-partition gauges: open windows, watermark and its lag behind `wall_ms`.
    pub fn update_gauges(&self, wall_ms: i64) {
        for st in self.parts.values() {
            let m = &st.metrics;
            m.open_windows.set(st.windows.open_windows().count() as i64);
            if let Some(wm) = st.windows.watermark_ms() {
                m.watermark.set(wm as f64 / 1000.0);
                m.watermark_lag.set((wall_ms - wm) as f64 / 1000.0);
            }
        }
    }

    /// Records that these commit points are now committed in Kafka.
    pub fn committed(&mut self, points: &[(i32, CommitPoint)]) {
        self.commit_failing_since = None;
        for (p, c) in points {
            if let Some(st) = self.parts.get_mut(p) {
                st.committed = Some(c.clone());
                // No replay from here on can meet a file of the replaced table.
                if st
                    .table_change
                    .as_ref()
                    .is_some_and(|t| t.wrote && c.offset >= t.old_files_until)
                {
                    st.table_change = None;
                }
            }
        }
        self.totals.commits += 1;
    }
}

/// A record bound for the rejects, kept whole.
fn reject_record(
    r: &ConsumedRecord<'_>,
    reason: RejectReason,
    detail: String,
    event_ms: Option<i64>,
    lateness_ms: Option<i64>,
) -> RejectRecord {
    RejectRecord {
        offset: r.offset,
        reason,
        detail,
        event_ms,
        lateness_ms,
        record_ts_ms: r.timestamp_ms,
        key: r.key.map(<[u8]>::to_vec),
        value: r.value.map(<[u8]>::to_vec),
    }
}

/// Places a decoded event in its partition's windows: counted, or rejected as late or as an
/// overflowing sum. Returns the windows its watermark closed.
fn count_event(
    st: &mut PartitionState,
    totals: &mut Totals,
    table: &CampaignTable,
    r: &ConsumedRecord<'_>,
    ev: &EventFields,
    progress_before: &Progress,
) -> Vec<ClosedWindow> {
    let (placement, closed) =
        st.windows
            .on_event(r.offset, ev.end_ms, ev.campaign_id, ev.end_ms - ev.start_ms);
    let (reason, detail, lateness_ms) = match placement {
        Placement::Counted { .. } => {
            totals.counted += 1;
            st.metrics.windowed.inc();
            if table.get(ev.campaign_id).is_none() {
                st.metrics.unknown_campaign.inc();
                totals.unknown_campaign += 1;
            }
            return closed;
        }
        Placement::Overflow { window_start_ms } => {
            st.metrics.invalid.inc();
            metrics::consumer().invalid(RejectReason::AggregateOverflow);
            let detail = format!(
                "counting this view would take campaign {}'s duration sum in the window \
                 starting {} past {} ms, what decimal(18,3) holds",
                ev.campaign_id,
                crate::event::format_timestamp(window_start_ms),
                crate::consume::window::MAX_SUM_MS
            );
            (RejectReason::AggregateOverflow, detail, None)
        }
        Placement::Late {
            window_start_ms,
            lateness_ms,
        } => {
            st.metrics.late.inc();
            metrics::consumer()
                .lateness
                .observe(lateness_ms as f64 / 1000.0);
            let detail = format!(
                "window starting {} had closed; watermark {} ms past its end",
                crate::event::format_timestamp(window_start_ms),
                lateness_ms
            );
            (RejectReason::Late, detail, Some(lateness_ms))
        }
    };
    totals.rejected(reason);
    let reject = reject_record(r, reason, detail, Some(ev.end_ms), lateness_ms);
    st.rejects.push(reject, progress_before.clone());
    closed
}
