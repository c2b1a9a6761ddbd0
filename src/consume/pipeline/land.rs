//! Landing: closed windows, then the rejects cut at the same offset, queued as they close and
//! landed as one group through the sink (see `sink::group`) at the end of each batch of
//! records, before every checkpoint, and whenever the queue is full.

use super::*;
use crate::consume::sink::{Contents, Pending};

/// Files queued before the queue lands on its own, whatever the batch: bounds the memory a
/// catch-up holds in closed windows.
const MAX_QUEUED_FILES: usize = 256;
/// Rows (campaign rows and rejected records) queued before the queue lands on its own: a cut
/// of rejects keeps whole records.
const MAX_QUEUED_ROWS: usize = 100_000;

/// Files waiting to land, with when each was closed (the landing delay is measured from it).
#[derive(Default)]
pub(super) struct Queue {
    files: Vec<Pending>,
    closed_at: Vec<Instant>,
    rows: usize,
}

impl Queue {
    fn push(&mut self, p: Pending, closed_at: Instant) {
        self.rows += p.rows();
        self.files.push(p);
        self.closed_at.push(closed_at);
    }

    fn full(&self) -> bool {
        self.files.len() >= MAX_QUEUED_FILES || self.rows >= MAX_QUEUED_ROWS
    }
}

impl Pipeline {
    /// Queues closed windows, then the rejects cut at the same offset.
    /// `closed_at` is when the watermark closed them.
    pub(super) fn land(
        &mut self,
        partition: i32,
        closed: Vec<ClosedWindow>,
        close_offset: i64,
        closed_at: Instant,
    ) -> Result<(), PipelineError> {
        let tc = self
            .parts
            .get(&partition)
            .and_then(|st| st.table_change.as_ref());
        let change = TableChange {
            accepted: self.cfg.accept_campaigns_change || tc.is_some(),
            replaced: tc.map(|t| t.replaced.clone()),
        };
        for w in closed {
            let pending = Pending {
                partition,
                change: change.clone(),
                what: Contents::Window(w),
            };
            self.queue.push(pending, closed_at);
        }
        if let Some(st) = self.parts.get_mut(&partition) {
            if !st.rejects.items.is_empty() {
                let what = Contents::Rejects {
                    close_offset,
                    records: st.rejects.take(),
                };
                let pending = Pending {
                    partition,
                    change,
                    what,
                };
                self.queue.push(pending, closed_at);
            }
        }
        if self.queue.full() {
            self.flush()?;
        }
        Ok(())
    }

    /// Lands the queue as one group and accounts for each file.
    pub(super) fn land_queued(&mut self) -> Result<(), PipelineError> {
        if self.queue.files.is_empty() {
            return Ok(());
        }
        let Queue {
            files, closed_at, ..
        } = std::mem::take(&mut self.queue);
        let landed = self.sink.land_group(&files)?;
        self.totals.groups += 1;
        for ((pending, landed), closed_at) in files.iter().zip(landed).zip(closed_at) {
            self.note_table_change(pending.partition, &landed, pending.close_offset());
            self.account(pending, landed, closed_at);
        }
        Ok(())
    }

    /// Counts a landed file in the totals and the metrics.
    fn account(&mut self, pending: &Pending, landed: Landed, closed_at: Instant) {
        let m = metrics::consumer();
        let partition = pending.partition;
        let part_metrics = self.parts.get(&partition).map(|st| &st.metrics);
        match (&pending.what, landed) {
            (Contents::Window(w), Landed::Written { path, bytes, rows }) => {
                self.totals.windows_landed += 1;
                self.totals.rows_written += rows;
                self.totals.bytes_written += bytes;
                m.land_delay.observe(closed_at.elapsed().as_secs_f64());
                m.rows_written.with_label_values(&["window"]).inc_by(rows);
                m.bytes_written.with_label_values(&["window"]).inc_by(bytes);
                if let Some(pm) = part_metrics {
                    pm.windows_landed.inc();
                }
                m.campaigns_landed(&self.table, &w.by_campaign);
                debug!(partition, window = %crate::event::format_timestamp(w.start_ms), path = %path.display(), "window landed");
            }
            (Contents::Window(_), Landed::AlreadyThere { path, .. }) => {
                self.totals.windows_already_there += 1;
                debug!(partition, path = %path.display(), "window had landed before; kept");
            }
            (Contents::Rejects { .. }, Landed::Written { bytes, rows, .. }) => {
                self.totals.reject_files_landed += 1;
                self.totals.bytes_written += bytes;
                if let Some(pm) = part_metrics {
                    pm.reject_files.inc();
                }
                m.rows_written.with_label_values(&["rejects"]).inc_by(rows);
                m.bytes_written
                    .with_label_values(&["rejects"])
                    .inc_by(bytes);
            }
            (Contents::Rejects { .. }, Landed::AlreadyThere { .. }) => {}
        }
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
}
