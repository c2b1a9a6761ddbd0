//! Caught-up partitions and idle closes: the wall clock closes the windows of a partition
//! that has nothing more to read, in two halves around a fencing commit (see
//! `commit::close_idle_fenced`), and a replay repeats those closes from their marks.

use super::*;

impl Pipeline {
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
            debug!(
                partition,
                position = st.position,
                at,
                "caught up past the last record handed over (aborted records or transaction markers)"
            );
            st.position = at;
            self.dirty = true;
        }
        let position = st.position;
        self.repeat_idle_closes(partition, position)?;
        self.flush()?;
        if let Some(st) = self.parts.get_mut(&partition) {
            st.caught_up_since.get_or_insert(now);
        }
        Ok(())
    }

    /// In a replay, repeats the idle closes the first run made at or before `offset`, as
    /// recorded in the commit it started from: the same watermark at the same position, so the
    /// same windows and rejects land at the same offset (and are found there already).
    pub(super) fn repeat_idle_closes(
        &mut self,
        partition: i32,
        offset: i64,
    ) -> Result<(), PipelineError> {
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
        self.flush()
    }

    /// Every assigned partition is caught up and has closed what the wall clock allows.
    pub fn all_idle(&self) -> bool {
        !self.parts.is_empty()
            && self
                .parts
                .values()
                .all(|s| s.idle_closed && s.caught_up_since.is_some())
    }
}
