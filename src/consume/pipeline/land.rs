//! Landing: closed windows, then the rejects cut at the same offset, through the sink.

use super::*;

impl Pipeline {
    /// Lands closed windows, then the rejects cut at the same offset.
    /// `closed_at` is when the watermark closed them: the landing delay is measured from it.
    pub(super) fn land(
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
}
