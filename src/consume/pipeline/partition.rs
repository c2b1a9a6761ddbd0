//! One partition's live state.

use super::*;

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

    pub(super) fn checkpoint(&self, id: &Identity) -> PartitionCheckpoint {
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
