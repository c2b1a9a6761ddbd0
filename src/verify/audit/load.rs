//! Loading the files' claims: every window and reject file, with its footer checked.

use super::*;

impl Audit<'_> {
    pub(in crate::verify) fn load_windows(&mut self) -> Result<(), VerifyError> {
        for path in parquet_files(&self.cfg.report)? {
            match read_window_file(&self.cfg.report, &path) {
                Ok(file) => self.load_window_file(file),
                Err(e) => self.unreadable(e)?,
            }
        }
        for m in self.tables.mixed() {
            if m.accepted {
                self.report.windows_across_table_change += 1;
            } else {
                let kind = "mixed_campaign_tables";
                self.flag(
                    kind,
                    m.partition,
                    Some(m.window_ms),
                    Some(m.offsets),
                    Some(&m.path),
                    m.detail,
                );
            }
        }
        Ok(())
    }

    fn load_window_file(
        &mut self,
        file: crate::readback::ReadBack<crate::readback::WindowFileRow>,
    ) {
        let topic = self.cfg.kafka.topic.clone();
        let (path, f) = (file.path, file.footer);
        if f.get("topic") != Some(topic.as_str()) {
            self.report.other_topic_files += 1;
            return;
        }
        let fields = (
            f.int("partition"),
            f.int("window_start_ms"),
            f.int("window_end_ms"),
            f.int("first_offset"),
            f.int("close_offset"),
        );
        let (Some(p), Some(start_ms), Some(end_ms), Some(first), Some(close)) = fields else {
            let detail =
                "not a Landfall window file: its footer lacks the landfall.* provenance keys";
            self.flag_unreadable(&path, detail.into());
            return;
        };
        let p = p as i32;
        if let Some((kind, detail)) = self.evidence.footer_problem(&f) {
            // Not this topic's output under these settings: it explains no record.
            self.flag(
                kind,
                p,
                Some(start_ms),
                Some((first, close - 1)),
                Some(&path),
                detail,
            );
            return;
        }
        let expected_name = self.cfg.report.join(&window_file_name(&topic, p, start_ms));
        if expected_name != path {
            self.flag(
                "misnamed_window_file",
                p,
                Some(start_ms),
                Some((first, close - 1)),
                Some(&path),
                format!("its footer says it is {}", expected_name.display()),
            );
        }
        let cells = self.check_rows(p, start_ms, (first, close - 1), &path, &file.rows);
        self.tables.add(
            path.clone(),
            p,
            start_ms,
            (first, close - 1),
            &f,
            &file.rows,
        );
        self.report.window_files += 1;
        let part = self.parts.entry(p).or_default();
        part.closes
            .push((close, end_ms, f.get("closed_by") == Some("idle_timeout")));
        part.cut = part.cut.max(close);
        part.files.entry(start_ms).or_default().push(WindowClaim {
            path,
            end_ms,
            first_offset: first,
            close_offset: close,
            cells,
        });
    }

    pub(in crate::verify) fn load_rejects(&mut self) -> Result<(), VerifyError> {
        if self.cfg.rejects.local().is_some_and(|d| !d.is_dir()) {
            return Ok(());
        }
        for path in parquet_files(&self.cfg.rejects)? {
            let file = match read_reject_file(&self.cfg.rejects, &path) {
                Ok(file) => file,
                Err(e) => {
                    self.unreadable(e)?;
                    continue;
                }
            };
            if let Some((kind, detail)) = self.evidence.footer_problem(&file.footer) {
                let p = file.footer.int("partition").unwrap_or(-1) as i32;
                self.flag(kind, p, None, None, Some(&path), detail);
                continue;
            }
            let close = file.footer.int("close_offset");
            let mut counted = false;
            for r in file.rows {
                if r.topic != self.cfg.kafka.topic {
                    continue;
                }
                counted = true;
                let part = self.parts.entry(r.partition).or_default();
                if let Some(c) = close {
                    part.cut = part.cut.max(c);
                }
                part.rejects.entry(r.offset).or_default().push(RejectClaim {
                    reason: r.reason,
                    bytes: record_hash(r.key.as_deref(), r.value.as_deref()),
                    path: path.clone(),
                });
            }
            if counted {
                self.report.reject_files += 1;
            } else {
                self.report.other_topic_files += 1;
            }
        }
        Ok(())
    }

    /// Each row of a window file: its window, a sound aggregate, one row per campaign.
    /// Returns the file's aggregates by campaign.
    fn check_rows(
        &mut self,
        p: i32,
        start_ms: i64,
        offsets: (i64, i64),
        path: &Path,
        rows: &[crate::readback::WindowFileRow],
    ) -> BTreeMap<i64, Agg> {
        let mut cells = BTreeMap::new();
        for r in rows {
            let mismatch = |detail| ("aggregate_mismatch", detail);
            let problem = if r.window_start_us != start_ms.saturating_mul(1000) {
                Some(mismatch(format!(
                    "campaign {} row has window_start {} µs, but the footer says {} ms",
                    r.campaign_id, r.window_start_us, start_ms
                )))
            } else if let Some(d) = crate::verify::identity::aggregate_problem(r) {
                Some(("aggregate_invalid", d))
            } else if cells.insert(r.campaign_id, r.agg).is_some() {
                Some(mismatch(format!("campaign {} has two rows", r.campaign_id)))
            } else {
                None
            };
            if let Some((kind, detail)) = problem {
                let offsets = Some(offsets);
                self.flag(kind, p, Some(start_ms), offsets, Some(path), detail);
            }
        }
        cells
    }
}
