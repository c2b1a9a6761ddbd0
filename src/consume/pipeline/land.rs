//! Landing: closed windows, then the rejects cut at the same offset, queued as they close and
//! landed as one group through the sink (see `sink::group`) at the end of each batch of
//! records, whenever the queue is full, and before every checkpoint.
//!
//! A group lands on a thread of its own while the worker goes on windowing the records after
//! it: encoding, writing and fsyncing a group's files overlaps the work that closes the next
//! group's windows. Groups still land one at a time and in order (the next is sent only once
//! the one before has landed and been accounted for), and everything that decides on what
//! landed first waits for the group in flight: a checkpoint (so "durable, then state, then
//! commit" holds as before), "caught up", an idle close. A group that failed poisons the
//! pipeline when its result is collected, at the latest at the next checkpoint, so nothing is
//! committed past it.

use std::thread::JoinHandle;

use super::*;
use crate::consume::sink::{Contents, Pending};

/// Files queued before the queue lands on its own, whatever the batch: bounds the memory a
/// catch-up holds in closed windows.
const MAX_QUEUED_FILES: usize = 256;
/// Rows (campaign rows and rejected records) queued before the queue lands on its own: a cut
/// of rejects keeps whole records.
const MAX_QUEUED_ROWS: usize = 100_000;

/// A group landing on its own thread (see the module's comment).
pub(super) type InFlight = JoinHandle<Landing>;

/// What the landing thread hands back: the group, what became of each file, and when.
pub(super) struct Landing {
    files: Vec<Pending>,
    closed_at: Vec<Instant>,
    landed: Result<Vec<Landed>, SinkError>,
    done_at: Instant,
}

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
            self.send_queued()?;
        }
        Ok(())
    }

    /// Sends the queue to land as one group on a thread of its own, once the group before it
    /// has landed (and been accounted for); without waiting for this one. With nothing
    /// queued, only collects a group that has finished. A poisoned pipeline sends nothing
    /// more: what it queued may stand on data that never landed.
    pub(super) fn send_queued(&mut self) -> Result<(), PipelineError> {
        if self.poisoned {
            return Ok(());
        }
        if self.queue.files.is_empty() {
            return self.collect_landed();
        }
        self.settle()?;
        let Queue {
            files, closed_at, ..
        } = std::mem::take(&mut self.queue);
        let sink = Arc::clone(&self.sink);
        let landing = move || {
            let landed = sink.land_group(&files);
            Landing {
                files,
                closed_at,
                landed,
                done_at: Instant::now(),
            }
        };
        let thread = std::thread::Builder::new()
            .name("landfall-land".into())
            .spawn(landing)
            .map_err(PipelineError::LandingThread)?;
        self.in_flight = Some(thread);
        // The group is landing on its own thread, at any of its steps; the worker goes on.
        crate::ops::failpoint::hit("group-in-flight");
        Ok(())
    }

    /// Accounts for the group in flight if it has finished landing; does not wait.
    pub(super) fn collect_landed(&mut self) -> Result<(), PipelineError> {
        match &self.in_flight {
            Some(thread) if thread.is_finished() => self.settle(),
            _ => Ok(()),
        }
    }

    /// Waits for the group in flight, if there is one, and accounts for each of its files.
    pub(super) fn settle(&mut self) -> Result<(), PipelineError> {
        let Some(thread) = self.in_flight.take() else {
            return Ok(());
        };
        let Landing {
            files,
            closed_at,
            landed,
            done_at,
        } = thread
            .join()
            .map_err(|p| PipelineError::WorkerPanic(crate::error::panic_message(&*p)))?;
        let landed = landed?;
        self.totals.groups += 1;
        for ((pending, landed), closed_at) in files.iter().zip(landed).zip(closed_at) {
            self.note_table_change(pending.partition, &landed, pending.close_offset());
            self.account(pending, landed, done_at.duration_since(closed_at));
        }
        Ok(())
    }

    /// Counts a landed file in the totals and the metrics; `delay` is from its close to its
    /// landing.
    fn account(&mut self, pending: &Pending, landed: Landed, delay: Duration) {
        let m = metrics::consumer();
        let partition = pending.partition;
        let part_metrics = self.parts.get(&partition).map(|st| &st.metrics);
        match (&pending.what, landed) {
            (Contents::Window(w), Landed::Written { path, bytes, rows }) => {
                self.totals.windows_landed += 1;
                self.totals.rows_written += rows;
                self.totals.bytes_written += bytes;
                m.land_delay.observe(delay.as_secs_f64());
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
