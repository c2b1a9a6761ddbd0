//! The ordering that makes it exactly-once: decode, enrich and window each record; land every
//! window the watermark closes (and the rejects cut with it) before anything else; then
//! checkpoint to sled and flush; only then commit to Kafka the lowest offset still needed,
//! with the partition's progress at that offset as commit metadata.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::consume::decode::{decode, Limits, RejectReason};
use crate::consume::enrich::CampaignTable;
use crate::consume::sink::{Landed, RejectRecord, Sink, SinkError, TableChange};
use crate::consume::state::{
    CommitPoint, PartitionCheckpoint, RejectBuffer, StateError, StateStore,
};
use crate::consume::window::{ClosedWindow, IdleMark, PartitionWindows, Placement, WindowConfig};
use crate::identity::{Identity, IdentityError, Settings};
use crate::ops::kafka::KafkaSettings;
use crate::ops::metrics::{self, PartitionMetrics};

#[derive(Debug, Clone)]
pub struct ConsumeConfig {
    pub kafka: KafkaSettings,
    pub group: String,
    pub instance_id: Option<String>,
    pub assignment_strategy: crate::cli::AssignmentStrategy,
    pub campaigns: PathBuf,
    pub output_dir: PathBuf,
    pub rejects_dir: PathBuf,
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
    #[error("{0}")]
    Recovery(String),
    #[error(transparent)]
    Identity(Box<IdentityError>),
    #[error("the pipeline worker panicked: {0}; nothing was committed past the last landed file")]
    WorkerPanic(String),
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
    pub rows_written: u64,
    pub bytes_written: u64,
    pub commits: u64,
}

/// One partition's live state.
#[derive(Debug)]
pub struct PartitionState {
    pub windows: PartitionWindows,
    pub rejects: RejectBuffer,
    /// Next offset to process.
    pub position: i64,
    /// What was last committed (or found committed at assignment).
    pub committed: Option<CommitPoint>,
    /// Set when the partition reached its end and nothing arrived since.
    pub caught_up_since: Option<Instant>,
    /// The watermark was advanced by the wall clock while idle.
    pub idle_closed: bool,
    /// An idle close decided (and marked) but not carried out yet, and whether it was marked.
    pub idle_plan: Option<(IdleMark, bool)>,
    /// A campaign table change that a replay from this partition's commits may still meet
    /// files of (see `TableChangeState`).
    pub table_change: Option<TableChangeState>,
    pub metrics: PartitionMetrics,
}

impl PartitionState {
    pub fn fresh(
        partition: i32,
        window: WindowConfig,
        commit: Option<CommitPoint>,
        position: i64,
    ) -> Self {
        PartitionState {
            metrics: metrics::consumer().partition(partition),
            windows: PartitionWindows::new(
                window,
                commit
                    .as_ref()
                    .map(|c| c.progress.clone())
                    .unwrap_or_default(),
            ),
            rejects: RejectBuffer::default(),
            position,
            committed: commit,
            caught_up_since: None,
            idle_closed: false,
            idle_plan: None,
            table_change: None,
        }
    }

    pub fn from_checkpoint(partition: i32, cp: PartitionCheckpoint) -> Self {
        PartitionState {
            metrics: metrics::consumer().partition(partition),
            windows: cp.windows,
            rejects: cp.rejects,
            position: cp.position,
            committed: Some(cp.commit),
            caught_up_since: None,
            idle_closed: false,
            idle_plan: None,
            table_change: None,
        }
    }

    /// The lowest offset still needed: the oldest open window's first record, the first
    /// unlanded reject, or the position; with the progress just before it.
    pub fn commit_point(&self) -> CommitPoint {
        let mut best = (self.position, self.windows.progress());
        for candidate in [self.windows.oldest_open(), self.rejects.first()]
            .into_iter()
            .flatten()
        {
            if candidate.0 < best.0 {
                best = candidate;
            }
        }
        CommitPoint {
            offset: best.0,
            progress: best.1,
        }
    }

    fn checkpoint(&self, id: &Identity) -> PartitionCheckpoint {
        PartitionCheckpoint {
            commit: self.commit_point(),
            position: self.position,
            windows: self.windows.clone(),
            rejects: self.rejects.clone(),
            topic_id: id.topic_id.clone(),
            campaigns_sha256: Some(id.campaigns_sha256.clone()),
        }
    }
}

/// A campaign table replaced under `--accept-campaigns-change`. Until no replay from a commit
/// can meet a file landed with the old table, the commits record it (` was=`), so a restart
/// keeps those files without the flag, and new footers name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChangeState {
    pub replaced: String,
    /// The highest close offset of a file found landed with the old table.
    pub old_files_until: i64,
    /// This run has written a file of its own: files are landed in offset order, so no file of
    /// the old table lies past that one.
    pub wrote: bool,
}

/// The per-record work and the landing order, independent of how records arrive.
pub struct Pipeline {
    pub cfg: ConsumeConfig,
    pub sink: Sink,
    pub store: StateStore,
    pub table: Arc<CampaignTable>,
    pub parts: BTreeMap<i32, PartitionState>,
    pub totals: Totals,
    last_checkpoint: Instant,
    dirty: bool,
    commit_failing_since: Option<Instant>,
    /// Set when processing failed part-way (a file did not land): the state in memory may have
    /// moved past data that is not on disk, so it is never checkpointed or committed again.
    poisoned: bool,
}

/// How long offset commits may keep failing before the consumer gives up.
pub const COMMIT_FAILURE_LIMIT: Duration = Duration::from_secs(120);

/// One Kafka record, borrowed.
pub struct Record<'a> {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub timestamp_ms: Option<i64>,
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
        let sink = Sink {
            report_dir: cfg.output_dir.clone(),
            rejects_dir: cfg.rejects_dir.clone(),
            identity,
            table: table.clone(),
            sync: !cfg.unsafe_no_durability,
        };
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
        }
    }

    /// Decides where a newly assigned partition starts, from Kafka's commit and sled.
    pub fn recover(
        &self,
        partition: i32,
        kafka_commit: Option<(i64, String)>,
    ) -> Result<PartitionState, PipelineError> {
        crate::ops::failpoint::hit("during-recovery");
        let topic = &self.cfg.kafka.topic;
        let mut replaced = None;
        let commit = match kafka_commit {
            None => None,
            Some((offset, meta)) => {
                let parsed = CommitPoint::parse_metadata(&meta).ok_or_else(|| {
                    PipelineError::Recovery(format!(
                        "partition {partition} of {topic} has committed offset {offset} in group {:?} \
                         but its metadata {meta:?} was not written by Landfall; refusing to guess a \
                         restart point (use a new --group)",
                        self.cfg.group
                    ))
                })?;
                replaced = self.check_commit(partition, &parsed)?;
                Some(CommitPoint {
                    offset,
                    progress: parsed.progress,
                })
            }
        };
        let mut st = self.restart_point(partition, commit);
        st.table_change = replaced.map(|replaced| TableChangeState {
            replaced,
            old_files_until: -1,
            wrote: false,
        });
        Ok(st)
    }

    /// Compares a commit's recorded identity with this run's (I7). Returns the campaign table
    /// the commit named when `--accept-campaigns-change` replaces it.
    fn check_commit(
        &self,
        partition: i32,
        meta: &crate::consume::state::CommitMeta,
    ) -> Result<Option<String>, PipelineError> {
        let id = &self.sink.identity;
        let (topic, group) = (id.topic.clone(), self.cfg.group.clone());
        if let (Some(committed), Some(current)) = (&meta.topic_id, &id.topic_id) {
            if committed != current {
                return Err(IdentityError::TopicRecreated {
                    topic,
                    group,
                    partition,
                    committed: committed.clone(),
                    current: current.clone(),
                }
                .into());
            }
        }
        if !id.settings.agrees_with(&meta.settings) {
            return Err(IdentityError::SettingsChanged {
                topic,
                group,
                partition,
                committed: meta.settings.clone(),
                current: id.settings.signature(),
            }
            .into());
        }
        match &meta.campaigns_sha256 {
            Some(committed) if *committed != id.campaigns_sha256 => {
                if !self.cfg.accept_campaigns_change {
                    return Err(IdentityError::CampaignsChanged {
                        topic,
                        group,
                        partition,
                        path: self.cfg.campaigns.clone(),
                        committed: committed.clone(),
                        current: id.campaigns_sha256.clone(),
                    }
                    .into());
                }
                warn!(
                    partition,
                    was = %committed,
                    now = %id.campaigns_sha256,
                    "campaign table changed (--accept-campaigns-change): windows that land from \
                     now on use the new table; files already landed keep the old one"
                );
                Ok(Some(committed.clone()))
            }
            _ => Ok(meta.campaigns_replaced.clone()),
        }
    }

    /// The commit metadata for `c`, a commit point of `partition`.
    pub fn commit_metadata(&self, partition: i32, c: &CommitPoint) -> String {
        let replaced = self
            .parts
            .get(&partition)
            .and_then(|st| st.table_change.as_ref())
            .map(|t| t.replaced.as_str());
        c.metadata(&self.sink.identity, replaced)
    }

    /// This run's identity: topic, topic ID, settings, campaign table.
    pub fn run_identity(&self) -> &Identity {
        &self.sink.identity
    }

    /// Where a partition whose commit checked out starts: the sled checkpoint made for exactly
    /// that commit, or a replay from the commit, or the beginning for a new group.
    fn restart_point(&self, partition: i32, commit: Option<CommitPoint>) -> PartitionState {
        let topic = &self.cfg.kafka.topic;
        if let (Some(cp), Some(commit)) = (self.store.load(topic, partition), &commit) {
            let id = &self.sink.identity;
            let same_identity = cp.topic_id == id.topic_id
                && cp.campaigns_sha256.as_ref() == Some(&id.campaigns_sha256);
            if cp.commit == *commit && cp.windows.config() == self.cfg.window && same_identity {
                info!(
                    partition,
                    position = cp.position,
                    committed = commit.offset,
                    "resuming from the state store"
                );
                return PartitionState::from_checkpoint(partition, cp);
            }
            info!(
                partition,
                state_commit = cp.commit.offset,
                kafka_commit = commit.offset,
                "state store disagrees with Kafka's committed offset; rebuilding from Kafka"
            );
        }
        match commit {
            Some(c) => {
                info!(
                    partition,
                    offset = c.offset,
                    "rebuilding from the committed offset"
                );
                let offset = c.offset;
                PartitionState::fresh(partition, self.cfg.window, Some(c), offset)
            }
            None => {
                info!(
                    partition,
                    "no committed offset for this group; starting from the beginning of the log"
                );
                PartitionState::fresh(partition, self.cfg.window, None, -1)
            }
        }
    }

    /// Marks the pipeline as having failed part-way: nothing is checkpointed or committed
    /// again (see `checkpoint`).
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Processes one record. After an error the pipeline is poisoned: see `checkpoint`.
    pub fn handle(&mut self, r: Record<'_>) -> Result<(), PipelineError> {
        let result = self.handle_record(r);
        self.poisoned |= result.is_err();
        result
    }

    fn handle_record(&mut self, r: Record<'_>) -> Result<(), PipelineError> {
        self.repeat_idle_closes(r.partition, r.offset)?;
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
        let reject = |reason: RejectReason, detail: String, event_ms, lateness_ms| RejectRecord {
            offset: r.offset,
            reason,
            detail,
            event_ms,
            lateness_ms,
            record_ts_ms: r.timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
        };
        let mut closed = Vec::new();
        match decode(r.value, r.timestamp_ms, &self.cfg.limits()) {
            Err(e) => {
                *self.totals.rejects.entry(e.reason.as_str()).or_default() += 1;
                st.metrics.invalid.inc();
                metrics::consumer().invalid(e.reason);
                st.rejects.push(
                    reject(e.reason, e.detail, e.event_ms, None),
                    progress_before.clone(),
                );
            }
            Ok(ev) => {
                let (placement, c) = st.windows.on_event(
                    r.offset,
                    ev.end_ms,
                    ev.campaign_id,
                    ev.end_ms - ev.start_ms,
                );
                closed = c;
                match placement {
                    Placement::Counted { .. } => {
                        self.totals.counted += 1;
                        st.metrics.windowed.inc();
                        if self.table.get(ev.campaign_id).is_none() {
                            st.metrics.unknown_campaign.inc();
                            self.totals.unknown_campaign += 1;
                        }
                    }
                    Placement::Overflow { window_start_ms } => {
                        let reason = RejectReason::AggregateOverflow;
                        *self.totals.rejects.entry(reason.as_str()).or_default() += 1;
                        st.metrics.invalid.inc();
                        metrics::consumer().invalid(reason);
                        let detail = format!(
                            "counting this view would take campaign {}'s duration sum in the \
                             window starting {} past {} ms, what decimal(18,3) holds",
                            ev.campaign_id,
                            crate::event::format_timestamp(window_start_ms),
                            crate::consume::window::MAX_SUM_MS
                        );
                        st.rejects.push(
                            reject(reason, detail, Some(ev.end_ms), None),
                            progress_before.clone(),
                        );
                    }
                    Placement::Late {
                        window_start_ms,
                        lateness_ms,
                    } => {
                        *self
                            .totals
                            .rejects
                            .entry(RejectReason::Late.as_str())
                            .or_default() += 1;
                        st.metrics.late.inc();
                        metrics::consumer()
                            .lateness
                            .observe(lateness_ms as f64 / 1000.0);
                        let detail = format!(
                            "window starting {} had closed; watermark {} ms past its end",
                            crate::event::format_timestamp(window_start_ms),
                            lateness_ms
                        );
                        st.rejects.push(
                            reject(
                                RejectReason::Late,
                                detail,
                                Some(ev.end_ms),
                                Some(lateness_ms),
                            ),
                            progress_before.clone(),
                        );
                    }
                }
            }
        }
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

    /// Lands closed windows, then the rejects cut at the same offset.
    /// `closed_at` is when the watermark closed them: the landing delay is measured from it.
    fn land(
        &mut self,
        partition: i32,
        closed: Vec<ClosedWindow>,
        close_offset: i64,
        closed_at: Instant,
    ) -> Result<(), PipelineError> {
        let m = metrics::consumer();
        let tc = self
            .parts
            .get(&partition)
            .and_then(|st| st.table_change.as_ref());
        let change = TableChange {
            accepted: self.cfg.accept_campaigns_change || tc.is_some(),
            replaced: tc.map(|t| t.replaced.clone()),
        };
        for w in &closed {
            let landed = self.sink.land_window(partition, w, &change)?;
            self.note_table_change(partition, &landed, w.close_offset);
            match landed {
                Landed::Written { path, bytes, rows } => {
                    self.totals.windows_landed += 1;
                    self.totals.rows_written += rows;
                    self.totals.bytes_written += bytes;
                    m.land_delay.observe(closed_at.elapsed().as_secs_f64());
                    m.rows_written.with_label_values(&["window"]).inc_by(rows);
                    m.bytes_written.with_label_values(&["window"]).inc_by(bytes);
                    if let Some(st) = self.parts.get(&partition) {
                        st.metrics.windows_landed.inc();
                    }
                    for (campaign, agg) in &w.by_campaign {
                        m.campaign_landed(self.table.get(*campaign), *campaign, agg);
                    }
                    debug!(partition, window = %crate::event::format_timestamp(w.start_ms), path = %path.display(), "window landed");
                }
                Landed::AlreadyThere { path, .. } => {
                    self.totals.windows_already_there += 1;
                    debug!(partition, path = %path.display(), "window had landed before; kept");
                }
            }
        }
        let Some(st) = self.parts.get_mut(&partition) else {
            return Ok(());
        };
        if !st.rejects.items.is_empty() {
            let cut = st.rejects.take();
            let landed = self
                .sink
                .land_rejects(partition, close_offset, &cut, &change)?;
            self.note_table_change(partition, &landed, close_offset);
            if let Landed::Written { bytes, rows, .. } = landed {
                self.totals.reject_files_landed += 1;
                self.totals.bytes_written += bytes;
                if let Some(st) = self.parts.get(&partition) {
                    st.metrics.reject_files.inc();
                }
                m.rows_written.with_label_values(&["rejects"]).inc_by(rows);
                m.bytes_written
                    .with_label_values(&["rejects"])
                    .inc_by(bytes);
            }
        }
        Ok(())
    }

    /// Follows a campaign table change: which files of the old table a replay may meet.
    fn note_table_change(&mut self, partition: i32, landed: &Landed, close_offset: i64) {
        let Some(tc) = self
            .parts
            .get_mut(&partition)
            .and_then(|st| st.table_change.as_mut())
        else {
            return;
        };
        match landed {
            Landed::Written { .. } => tc.wrote = true,
            Landed::AlreadyThere {
                other_table: true, ..
            } => tc.old_files_until = tc.old_files_until.max(close_offset),
            Landed::AlreadyThere { .. } => {}
        }
    }

    /// A partition reached its end (lag 0).
    /// The partition reached the end of what it can read. A replay that ends exactly where
    /// the first run closed it by the idle timeout repeats that close here.
    ///
    /// `at` is the offset it is caught up to. It can be past the position when the records
    /// between were never handed over (aborted transactions, their markers, or a partition the
    /// group had consumed to its end): nothing below `at` is left to read, so that is the
    /// position, and the partition can be committed and closed like any other.
    pub fn caught_up(
        &mut self,
        partition: i32,
        at: i64,
        now: Instant,
    ) -> Result<(), PipelineError> {
        let Some(st) = self.parts.get_mut(&partition) else {
            return Ok(());
        };
        if at > st.position {
            st.position = at;
            self.dirty = true;
        }
        let position = st.position;
        self.repeat_idle_closes(partition, position)?;
        if let Some(st) = self.parts.get_mut(&partition) {
            st.caught_up_since.get_or_insert(now);
        }
        Ok(())
    }

    /// In a replay, repeats the idle closes the first run made at or before `offset`, as
    /// recorded in the commit it started from: the same watermark at the same position, so the
    /// same windows and rejects land at the same offset (and are found there already).
    fn repeat_idle_closes(&mut self, partition: i32, offset: i64) -> Result<(), PipelineError> {
        let what = "repeating an idle close of an earlier run";
        while self.carry_out_idle_mark(partition, offset, what)? {}
        Ok(())
    }

    /// Carries out the first pending idle mark at or before `offset`, if there is one: moves
    /// the watermark and lands what that closes, with the buffered rejects, at the mark's
    /// offset. Returns whether there was one.
    fn carry_out_idle_mark(
        &mut self,
        partition: i32,
        offset: i64,
        what: &str,
    ) -> Result<bool, PipelineError> {
        let Some(st) = self.parts.get_mut(&partition) else {
            return Ok(false);
        };
        let Some(mark) = st.windows.take_due_mark(offset) else {
            return Ok(false);
        };
        let closed = st
            .windows
            .advance_watermark(mark.watermark_ms, mark.at_offset);
        info!(
            partition,
            at_offset = mark.at_offset,
            windows = closed.len(),
            rejects = st.rejects.items.len(),
            "{what}"
        );
        self.dirty = true;
        self.land(partition, closed, mark.at_offset, Instant::now())?;
        Ok(true)
    }

    /// Partitions caught up for the idle timeout that have not been closed by it yet.
    fn idle_due(&self, now: Instant) -> Vec<i32> {
        self.parts
            .iter()
            .filter(|(_, st)| {
                !st.idle_closed
                    && st
                        .caught_up_since
                        .is_some_and(|since| now.duration_since(since) >= self.cfg.idle_timeout)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// The first half of an idle close: decides, for every partition caught up for the idle
    /// timeout, to move its watermark to the wall clock (`wall_ms`, ms since the epoch) minus
    /// the lateness at its position, and records that decision as an idle mark in the replay
    /// point of everything still open, so the next checkpoint and commit carry it. Returns
    /// whether any partition is due. Then either `close_idle` (once the commit went through)
    /// or `cancel_idle`.
    pub fn plan_idle_closes(&mut self, now: Instant, wall_ms: i64) -> bool {
        let due = self.idle_due(now);
        for p in &due {
            let Some(st) = self.parts.get_mut(p) else {
                continue;
            };
            let mark = IdleMark {
                at_offset: st.position,
                watermark_ms: wall_ms - self.cfg.window.lateness_ms,
            };
            // Only a close that changes something is marked: a watermark that moves, or
            // buffered rejects that land at this offset.
            let changes = st
                .windows
                .watermark_ms()
                .is_none_or(|w| w < mark.watermark_ms)
                || !st.rejects.items.is_empty();
            if changes {
                st.windows.mark_idle(mark);
                st.rejects.mark_idle(mark);
                self.dirty = true;
            }
            st.idle_plan = Some((mark, changes));
        }
        !due.is_empty()
    }

    /// Takes back the idle closes planned by `plan_idle_closes` (their commit was refused).
    pub fn cancel_idle(&mut self) {
        for st in self.parts.values_mut() {
            if let Some((mark, true)) = st.idle_plan.take() {
                st.windows.unmark_idle(mark);
                st.rejects.unmark_idle(mark);
            }
        }
    }

    /// The second half of an idle close: carries out the marks planned by
    /// `plan_idle_closes`, landing what they close with the buffered rejects (so an idle
    /// partition leaves nothing behind in state).
    pub fn close_idle(&mut self) -> Result<(), PipelineError> {
        let result = self.close_idle_partitions();
        self.poisoned |= result.is_err();
        result
    }

    fn close_idle_partitions(&mut self) -> Result<(), PipelineError> {
        let planned: Vec<(i32, IdleMark, bool)> = self
            .parts
            .iter_mut()
            .filter_map(|(p, st)| {
                let (mark, marked) = st.idle_plan.take()?;
                st.idle_closed = true;
                Some((*p, mark, marked))
            })
            .collect();
        for (p, mark, marked) in planned {
            if marked {
                let what = "idle partition: closing windows by the wall clock";
                while self.carry_out_idle_mark(p, mark.at_offset, what)? {}
            }
        }
        Ok(())
    }

    /// Every assigned partition is caught up and has closed what the wall clock allows.
    pub fn all_idle(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .values()
                .all(|s| s.idle_closed && s.caught_up_since.is_some())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readback::{parquet_files, read_reject_file};

    fn config(root: &std::path::Path) -> ConsumeConfig {
        ConsumeConfig {
            kafka: KafkaSettings {
                brokers: "127.0.0.1:1".into(),
                topic: "t".into(),
                connect_timeout: Duration::from_secs(1),
            },
            group: "g".into(),
            instance_id: None,
            assignment_strategy: crate::cli::AssignmentStrategy::CooperativeSticky,
            campaigns: root.join("campaigns.csv"),
            output_dir: root.join("report"),
            rejects_dir: root.join("rejects"),
            state_dir: root.join("state"),
            window: WindowConfig {
                size_ms: 60_000,
                lateness_ms: 60_000,
            },
            idle_timeout: Duration::from_secs(3600),
            max_future_skew_ms: i64::MAX / 4,
            max_duration_ms: 86_400_000,
            accept_campaigns_change: false,
            checkpoint_interval: Duration::from_secs(3600),
            exit_on_idle: false,
            unsafe_no_durability: false,
            http_addr: None,
        }
    }

    /// A pipeline over `root`'s directories, with partition 0 starting at `commit`.
    fn pipeline(root: &std::path::Path, store: &str, commit: Option<CommitPoint>) -> Pipeline {
        let cfg = config(root);
        for d in [&cfg.output_dir, &cfg.rejects_dir] {
            std::fs::create_dir_all(d).unwrap();
        }
        let table = CampaignTable::parse(
            &cfg.campaigns,
            b"network_id,campaign_id,campaign_name\n1,10,Campaign 10\n",
        )
        .unwrap();
        let store = StateStore::open(&root.join(store)).unwrap();
        let id = Pipeline::identity(&cfg, &table, Some("tid".into()));
        let mut p = Pipeline::new(cfg.clone(), Arc::new(table), store, id);
        let position = commit.as_ref().map_or(-1, |c| c.offset);
        p.parts
            .insert(0, PartitionState::fresh(0, cfg.window, commit, position));
        p
    }

    /// Event ending `end_secs` after the epoch, or an invalid record.
    fn value(end_secs: Option<i64>) -> Vec<u8> {
        match end_secs {
            Some(e) => format!(
                r#"{{"viewId":"v","startTimestamp":"{}","endTimestamp":"{}","bannerId":1,"campaignId":10}}"#,
                crate::event::format_timestamp((e - 1) * 1000),
                crate::event::format_timestamp(e * 1000)
            )
            .into_bytes(),
            None => b"not json".to_vec(),
        }
    }

    fn feed(p: &mut Pipeline, log: &[Vec<u8>], from: usize, to: usize) {
        for (o, v) in log.iter().enumerate().take(to).skip(from) {
            p.handle(Record {
                partition: 0,
                offset: o as i64,
                key: None,
                value: Some(v),
                timestamp_ms: Some(0),
            })
            .unwrap();
        }
    }

    /// Reject offsets with the file each is in; fails on a reject in two files.
    fn rejects(root: &std::path::Path) -> BTreeMap<i64, PathBuf> {
        let mut out = BTreeMap::new();
        for f in parquet_files(&root.join("rejects")).unwrap() {
            for r in read_reject_file(&f).unwrap().rows {
                if let Some(prev) = out.insert(r.offset, f.clone()) {
                    panic!(
                        "reject at {} in {} and {}",
                        r.offset,
                        prev.display(),
                        f.display()
                    );
                }
            }
        }
        out
    }

    /// Window A has its only record before the commit point and closes after it; a reject
    /// lies between. The replay has no window A, yet must cut the rejects where the first run
    /// did, or the reject lands in a second file.
    #[test]
    fn a_replay_cuts_rejects_where_the_first_run_did() {
        let log = vec![
            value(Some(10)),  // 0: window [0, 60) opens
            value(Some(70)),  // 1: window [60, 120) opens, watermark 10 s
            value(Some(80)),  // 2
            value(None),      // 3: a reject
            value(Some(125)), // 4: watermark 65 s closes [0, 60): cut at 5
            value(Some(185)), // 5: watermark 125 s closes [60, 120)
        ];
        let clean = tempfile::tempdir().unwrap();
        let mut p = pipeline(clean.path(), "state", None);
        feed(&mut p, &log, 0, log.len());
        let want = rejects(clean.path());

        let crashy = tempfile::tempdir().unwrap();
        let mut first = pipeline(crashy.path(), "state-1", None);
        feed(&mut first, &log, 0, 5);
        let commit = first.checkpoint(None).unwrap()[0].1.clone();
        assert_eq!(commit.offset, 1, "the oldest open window starts at 1");
        drop(first); // the crash: the rest of the log is replayed from the commit
        let mut replay = pipeline(crashy.path(), "state-2", Some(commit));
        feed(&mut replay, &log, 1, log.len());
        let got = rejects(crashy.path());
        let names = |m: &BTreeMap<i64, PathBuf>| -> Vec<_> {
            m.values()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect()
        };
        assert_eq!(names(&got), names(&want));
    }

    /// Window files and their bytes, by name.
    fn windows(root: &std::path::Path) -> BTreeMap<std::ffi::OsString, Vec<u8>> {
        parquet_files(&root.join("report"))
            .unwrap()
            .into_iter()
            .map(|f| {
                (
                    f.file_name().unwrap().to_owned(),
                    std::fs::read(&f).unwrap(),
                )
            })
            .collect()
    }

    /// Runs an idle close now, as the consumer does: plan (mark), checkpoint and commit,
    /// close. Returns the commit that carries the mark.
    fn idle_close(p: &mut Pipeline, wall_ms: i64) -> CommitPoint {
        let t0 = Instant::now();
        p.caught_up(0, p.parts[&0].position, t0).unwrap();
        assert!(p.plan_idle_closes(t0 + p.cfg.idle_timeout, wall_ms));
        let commit = p.checkpoint(None).unwrap()[0].1.clone();
        p.close_idle().unwrap();
        commit
    }

    /// An idle close lands window [0, 60) by the wall clock while [60, 120) stays open; then a
    /// record of [0, 60) arrives, which is late. A crash right after the landing leaves the
    /// commit from before it, at the open window. The replay must repeat the idle close from
    /// the mark in that commit, or it would count the late record into [0, 60), whose file
    /// already exists, and the record would land nowhere.
    #[test]
    fn a_replay_repeats_an_idle_close_from_its_mark() {
        let log = vec![
            value(Some(10)),  // 0: window [0, 60)
            value(Some(70)),  // 1: window [60, 120); watermark 10 s; then the partition idles
            value(Some(30)),  // 2: [0, 60) again: late after the idle close
            value(Some(190)), // 3: watermark 130 s closes [60, 120)
        ];
        let wall_ms = 130_000; // the idle close moves the watermark to 70 s
        let clean = tempfile::tempdir().unwrap();
        let mut p = pipeline(clean.path(), "state", None);
        feed(&mut p, &log, 0, 2);
        idle_close(&mut p, wall_ms);
        feed(&mut p, &log, 2, log.len());
        let (want_windows, want_rejects) = (windows(clean.path()), rejects(clean.path()));
        assert_eq!(want_windows.len(), 2);
        assert!(want_rejects.contains_key(&2), "{want_rejects:?}");

        // The crash comes right after the landing (the commit carrying the mark is the one
        // made before it) or after the commit that follows the close.
        for after_close in [false, true] {
            let crashy = tempfile::tempdir().unwrap();
            let mut first = pipeline(crashy.path(), "state-1", None);
            feed(&mut first, &log, 0, 2);
            let mut commit = idle_close(&mut first, wall_ms);
            if after_close {
                commit = first.checkpoint(None).unwrap()[0].1.clone();
            }
            let oldest_open = if after_close { 1 } else { 0 };
            assert_eq!(commit.offset, oldest_open);
            assert_eq!(
                commit.progress.idle_marks,
                vec![IdleMark {
                    at_offset: 2,
                    watermark_ms: 70_000
                }]
            );
            let meta = commit.metadata(first.run_identity(), None);
            assert_eq!(
                CommitPoint::parse_metadata(&meta).map(|m| m.progress),
                Some(commit.progress.clone()),
                "{meta}"
            );
            drop(first);
            let from = commit.offset as usize;
            let mut replay = pipeline(crashy.path(), "state-2", Some(commit));
            feed(&mut replay, &log, from, log.len());
            assert_eq!(
                rejects(crashy.path()).keys().collect::<Vec<_>>(),
                want_rejects.keys().collect::<Vec<_>>()
            );
            assert_eq!(windows(crashy.path()), want_windows);
        }
    }
}
