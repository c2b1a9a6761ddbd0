//! After the scan: what each window should hold, compared with its file.

use super::*;

impl Audit<'_> {
    /// After the scan: compare what each window should hold with its file.
    pub(in crate::verify) fn settle(&mut self) {
        let cfg = self.cfg.window;
        let parts = std::mem::take(&mut self.parts);
        for (p, mut part) in parts {
            let final_wm = {
                let ev = part.max_event_ms.map(|m| m - cfg.lateness_ms);
                let files = part
                    .closes
                    .iter()
                    .filter(|c| c.0 <= part.end)
                    .map(|c| c.1)
                    .max();
                ev.into_iter().chain(files).max()
            };
            for (start, want) in std::mem::take(&mut part.expected) {
                let count: u64 = want.cells.values().map(|a| a.count).sum();
                let offsets = Some((want.first_offset, want.last_offset));
                let Some(files) = part.files.remove(&start) else {
                    let closed = final_wm.is_some_and(|w| start + cfg.size_ms <= w);
                    // With a group, a window whose records are below the commit must have
                    // landed; a closed one past it may be landing right now (or was cut short
                    // by a crash) and is pending.
                    let must = part.committed.map_or(closed, |c| want.first_offset < c);
                    if must {
                        let why = match part.committed {
                            Some(c) => {
                                format!("the group's committed offset {c} is past its first record")
                            }
                            None => format!(
                                "the watermark passed its end ({})",
                                final_wm.map(format_timestamp).unwrap_or_default()
                            ),
                        };
                        self.flag("missing_window_file", p, Some(start), offsets, None, format!("{count} records belong to this window, which has no file, yet {why}"));
                    } else {
                        self.report.pending_records += count;
                    }
                    continue;
                };
                if files.len() > 1 {
                    let paths: Vec<String> =
                        files.iter().map(|f| f.path.display().to_string()).collect();
                    self.flag(
                        "duplicate_window_file",
                        p,
                        Some(start),
                        offsets,
                        None,
                        format!(
                            "{} files cover this window: {}",
                            files.len(),
                            paths.join(", ")
                        ),
                    );
                }
                let f = &files[0];
                if f.close_offset > part.end {
                    self.report.files_past_end += files.len() as u64;
                    continue;
                }
                self.report.counted += count;
                if f.first_offset != want.first_offset
                    || want.last_offset >= f.close_offset
                    || f.end_ms != start + cfg.size_ms
                {
                    self.flag("offset_range_mismatch", p, Some(start), offsets, Some(&f.path.clone()), format!("the footer says offsets {}..{} and end {}, the log says {}..={} and end {}", f.first_offset, f.close_offset, format_timestamp(f.end_ms), want.first_offset, want.last_offset, format_timestamp(start + cfg.size_ms)));
                }
                self.compare_cells(p, start, offsets, &want, &files);
            }
            self.flag_leftovers(p, part);
        }
    }

    /// Each file of a window against what the log gives it, campaign by campaign.
    fn compare_cells(
        &mut self,
        p: i32,
        start: i64,
        offsets: Option<(i64, i64)>,
        want: &Expected,
        files: &[WindowClaim],
    ) {
        for file in files {
            let campaigns: BTreeSet<i64> = want
                .cells
                .keys()
                .chain(file.cells.keys())
                .copied()
                .collect();
            for c in campaigns {
                let (have, should) = (file.cells.get(&c), want.cells.get(&c));
                let same = match (have, should) {
                    (Some(h), Some(w)) => w.matches(h),
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    let show = |a: Option<&Agg>| {
                        a.map_or("no row".to_string(), |a| {
                            format!(
                                "count {} sum {} ms min {} ms max {} ms",
                                a.count, a.sum_ms, a.min_ms, a.max_ms
                            )
                        })
                    };
                    let should = should.map_or("no row".to_string(), Cell::show);
                    self.flag(
                        "aggregate_mismatch",
                        p,
                        Some(start),
                        offsets,
                        Some(&file.path.clone()),
                        format!(
                            "campaign {c}: the file has {}, the log gives {}",
                            show(have),
                            should
                        ),
                    );
                }
            }
        }
    }

    /// Files and rejects that no committed record explains.
    fn flag_leftovers(&mut self, p: i32, part: PartitionAudit) {
        for (start, files) in part.files {
            for f in files {
                if f.close_offset > part.end {
                    self.report.files_past_end += 1;
                    continue;
                }
                self.flag("extra_window_file", p, Some(start), Some((f.first_offset, f.close_offset - 1)), Some(&f.path.clone()), "no committed record belongs to this window (a copy, or data from aborted transactions)".into());
            }
        }
        for (o, claims) in part.rejects {
            if o >= part.end {
                continue;
            }
            for c in claims {
                self.flag("extra_reject", p, None, Some((o, o)), Some(&c.path.clone()), format!("rejected as {}, but a read_committed reader sees no record at this offset (aborted, or not in the log)", c.reason));
            }
        }
    }
}
