//! The replay: each committed record, in offset order, against the files' claims.

use super::*;

impl Audit<'_> {
    /// One committed record, in offset order within its partition.
    pub(in crate::verify) fn on_record(&mut self, r: crate::ops::kafka::Scanned<'_>) {
        self.report.records += 1;
        let cfg = self.cfg.window;
        let (p, o) = (r.partition, r.offset);
        let part = self.parts.entry(p).or_default();
        if o < part.start {
            self.report.before_start += 1;
            return;
        }
        while let Some(&(close, end, idle)) = part.closes.get(part.next_close) {
            if close > o {
                break;
            }
            part.file_watermark_ms = Some(part.file_watermark_ms.map_or(end, |w| w.max(end)));
            part.idle_seen |= idle;
            part.next_close += 1;
        }
        let watermark = match (
            part.max_event_ms.map(|m| m - cfg.lateness_ms),
            part.file_watermark_ms,
        ) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let claims = part.rejects.remove(&o).unwrap_or_default();
        // Below the group's commit everything has landed (I4). Without a group, the files
        // are the evidence: rejects are cut whenever a file lands.
        let must_have_landed = part.committed.map_or(o < part.cut, |c| o < c);
        let idle_seen = part.idle_seen;
        let decoded = decode(r.value, r.timestamp_ms, &self.cfg.limits);

        self.check_claims(p, o, &claims, record_hash(r.key, r.value));
        let claim = claims.first().map(|c| (c.reason.clone(), c.path.clone()));
        match decoded {
            Err(e) => self.on_invalid(p, o, &e, claim, must_have_landed),
            Ok(ev) => self.on_event(
                p,
                o,
                &ev,
                claim,
                Seen {
                    watermark,
                    idle_seen,
                    must_have_landed,
                },
            ),
        }
    }

    /// A valid event at offset `o` of partition `p`: counted in its window, or rightly
    /// rejected (late, or its window's sum would overflow).
    fn on_event(
        &mut self,
        p: i32,
        o: i64,
        ev: &crate::event::ViewEvent,
        claim: Option<(String, PathBuf)>,
        seen: Seen,
    ) {
        let cfg = self.cfg.window;
        let start = cfg.start_of(ev.end_ms);
        let closed = seen.watermark.is_some_and(|w| start + cfg.size_ms <= w);
        let d = ev.end_ms - ev.start_ms;
        let overflow = !closed
            && self.parts.get(&p).is_some_and(|part| {
                part.expected
                    .get(&start)
                    .and_then(|w| w.cells.get(&ev.campaign_id))
                    .is_some_and(|c| c.overflows_with(d))
            });
        let wrong = |why: String| ("wrong_reject_reason", why);
        match claim {
            Some((reason, path)) => {
                self.report.rejected += 1;
                let problem = match reason.as_str() {
                    "late" if !closed && !seen.idle_seen => Some(wrong(format!(
                        "rejected as late, but its window was open (watermark {:?})",
                        seen.watermark.map(format_timestamp)
                    ))),
                    "late" => None,
                    "aggregate_overflow" if !overflow => Some(wrong(
                        "rejected as aggregate_overflow, but its campaign's sum in the window \
                         stays within decimal(18,3)"
                            .into(),
                    )),
                    "aggregate_overflow" => None,
                    _ => Some(wrong(format!(
                        "rejected as {reason}, but it is a valid event"
                    ))),
                };
                if let Some((kind, detail)) = problem {
                    self.flag(kind, p, Some(start), Some((o, o)), Some(&path), detail);
                }
            }
            None if closed || overflow => {
                if seen.must_have_landed {
                    let why = if closed {
                        format!(
                            "late record (its window closed at watermark {}) is in no reject file",
                            seen.watermark.map(format_timestamp).unwrap_or_default()
                        )
                    } else {
                        "its campaign's sum in the window would overflow decimal(18,3), so it \
                         belongs in the rejects, but it is in no reject file"
                            .into()
                    };
                    self.flag("missing_reject", p, Some(start), Some((o, o)), None, why);
                } else {
                    self.report.pending_records += 1;
                }
            }
            None => {
                let part = self.parts.entry(p).or_default();
                part.max_event_ms = Some(part.max_event_ms.map_or(ev.end_ms, |m| m.max(ev.end_ms)));
                let w = part.expected.entry(start).or_insert(Expected {
                    first_offset: o,
                    last_offset: o,
                    cells: BTreeMap::new(),
                });
                w.last_offset = o;
                w.cells.entry(ev.campaign_id).or_insert(Cell::EMPTY).add(d);
            }
        }
    }

    /// The reject rows claiming offset `o`: at most one, with the record's bytes.
    fn check_claims(&mut self, p: i32, o: i64, claims: &[RejectClaim], bytes: u64) {
        if claims.len() > 1 {
            let paths: Vec<String> = claims
                .iter()
                .map(|c| c.path.display().to_string())
                .collect();
            self.flag(
                "duplicate_reject",
                p,
                None,
                Some((o, o)),
                None,
                format!("in {} reject rows: {}", claims.len(), paths.join(", ")),
            );
        }
        if let Some(c) = claims.first() {
            if c.bytes != bytes {
                self.flag(
                    "reject_bytes_differ",
                    p,
                    None,
                    Some((o, o)),
                    Some(&c.path.clone()),
                    "the reject's key or value differs from the record in the log".into(),
                );
            }
        }
    }

    /// An invalid record at offset `o` of partition `p`: in the rejects with its reason, or
    /// still pending.
    fn on_invalid(
        &mut self,
        p: i32,
        o: i64,
        e: &crate::consume::decode::DecodeError,
        claim: Option<(String, PathBuf)>,
        must_have_landed: bool,
    ) {
        match claim {
            None if must_have_landed => self.flag(
                "missing_reject",
                p,
                None,
                Some((o, o)),
                None,
                format!(
                    "invalid record ({}: {}) is in no reject file",
                    e.reason.as_str(),
                    e.detail
                ),
            ),
            None => self.report.pending_records += 1,
            Some((reason, path)) => {
                self.report.rejected += 1;
                if reason != e.reason.as_str() {
                    self.flag(
                        "wrong_reject_reason",
                        p,
                        None,
                        Some((o, o)),
                        Some(&path),
                        format!(
                            "rejected as {reason}, but it decodes as {}",
                            e.reason.as_str()
                        ),
                    );
                }
            }
        }
    }
}
