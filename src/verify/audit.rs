//! The replay behind `verify`: the files' claims, loaded first, then each committed record
//! checked against them in offset order, then every window's expected aggregates compared with
//! its file.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::identity::{Evidence, Tables};
use super::{Discrepancy, VerifyConfig, VerifyError, VerifyReport};
use crate::consume::decode::decode;
use crate::consume::sink::window_file_name;
use crate::consume::window::{Agg, MAX_SUM_MS};
use crate::event::format_timestamp;
use crate::identity::Settings;
use crate::readback::{parquet_files, read_reject_file, read_window_file, ReadError};

/// A window file as its footer describes it.
#[derive(Debug, Clone)]
struct WindowClaim {
    path: PathBuf,
    end_ms: i64,
    first_offset: i64,
    close_offset: i64,
    cells: BTreeMap<i64, Agg>,
}

/// A reject row.
#[derive(Debug, Clone)]
struct RejectClaim {
    reason: String,
    bytes: u64,
    path: PathBuf,
}

/// What the log says a window holds.
#[derive(Debug, Clone)]
struct Expected {
    first_offset: i64,
    last_offset: i64,
    cells: BTreeMap<i64, Cell>,
}

/// One campaign's views in a window, added up in i128: independent of the consumer's checked
/// i64 arithmetic, so an overflow there cannot hide here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    count: u64,
    sum_ms: i128,
    min_ms: i64,
    max_ms: i64,
}

impl Cell {
    const EMPTY: Cell = Cell {
        count: 0,
        sum_ms: 0,
        min_ms: i64::MAX,
        max_ms: i64::MIN,
    };

    /// Whether adding a view of `d` ms would pass what a window file's sum can hold.
    fn overflows_with(&self, d: i64) -> bool {
        self.sum_ms + d as i128 > MAX_SUM_MS as i128
    }

    fn add(&mut self, d: i64) {
        self.count += 1;
        self.sum_ms += d as i128;
        self.min_ms = self.min_ms.min(d);
        self.max_ms = self.max_ms.max(d);
    }

    fn matches(&self, a: &Agg) -> bool {
        self.count == a.count
            && self.sum_ms == a.sum_ms as i128
            && (self.min_ms, self.max_ms) == (a.min_ms, a.max_ms)
    }

    fn show(&self) -> String {
        format!(
            "count {} sum {} ms min {} ms max {} ms",
            self.count, self.sum_ms, self.min_ms, self.max_ms
        )
    }
}

/// One partition's replay.
#[derive(Debug, Default)]
pub(super) struct PartitionAudit {
    /// Window files by window start (more than one is a discrepancy).
    files: BTreeMap<i64, Vec<WindowClaim>>,
    /// (close offset, window end, closed by idle), sorted: evidence of the watermark.
    pub(super) closes: Vec<(i64, i64, bool)>,
    next_close: usize,
    rejects: BTreeMap<i64, Vec<RejectClaim>>,
    /// Highest close offset of any file: every reject below it has been cut and landed.
    cut: i64,
    max_event_ms: Option<i64>,
    file_watermark_ms: Option<i64>,
    idle_seen: bool,
    expected: BTreeMap<i64, Expected>,
    pub(super) end: i64,
    pub(super) committed: Option<i64>,
}

fn record_hash(key: Option<&[u8]>, value: Option<&[u8]>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// What the replay knew of a partition when a record came.
struct Seen {
    watermark: Option<i64>,
    idle_seen: bool,
    must_have_landed: bool,
}

pub(super) struct Audit<'a> {
    cfg: &'a VerifyConfig,
    evidence: Evidence,
    tables: Tables,
    pub(super) parts: BTreeMap<i32, PartitionAudit>,
    pub(super) report: VerifyReport,
}

impl<'a> Audit<'a> {
    /// An audit of `cfg`'s output against the topic whose ID is now `topic_id`.
    pub(super) fn new(cfg: &'a VerifyConfig, topic_id: Option<String>) -> Self {
        Audit {
            cfg,
            evidence: Evidence {
                topic_id: topic_id.clone(),
                settings: Settings {
                    window: cfg.window,
                    limits: cfg.limits,
                },
            },
            tables: Tables::default(),
            parts: BTreeMap::new(),
            report: VerifyReport {
                topic: cfg.kafka.topic.clone(),
                topic_id,
                ..Default::default()
            },
        }
    }

    fn flag(
        &mut self,
        kind: &'static str,
        partition: i32,
        window_ms: Option<i64>,
        offsets: Option<(i64, i64)>,
        path: Option<&Path>,
        detail: String,
    ) {
        self.report.discrepancies.push(Discrepancy {
            kind,
            partition,
            window: window_ms.map(format_timestamp),
            offsets,
            path: path.map(Path::to_path_buf),
            detail,
        });
    }

    /// The group's commits must be for this topic (by ID) and these settings.
    pub(super) fn check_commits(&mut self, committed: &BTreeMap<i32, Option<(i64, String)>>) {
        for (&p, c) in committed {
            let Some((offset, meta)) = c else { continue };
            let Some(m) = crate::consume::commit::CommitPoint::parse_metadata(meta) else {
                continue;
            };
            let mut footer = crate::readback::Footer::default();
            for (k, v) in [
                ("topic_id", &m.topic_id),
                ("settings", &Some(m.settings.clone())),
            ] {
                if let Some(v) = v {
                    footer.0.insert(format!("landfall.{k}"), v.clone());
                }
            }
            if let Some((kind, detail)) = self.evidence.footer_problem(&footer) {
                let detail = format!("the group's commit at offset {offset}: {detail}");
                self.flag(kind, p, None, Some((*offset, *offset)), None, detail);
            }
        }
    }

    /// A file that cannot be read is a discrepancy that names it, never the end of the audit.
    fn unreadable(&mut self, e: ReadError) -> Result<(), VerifyError> {
        let Some(path) = e.file().map(Path::to_path_buf) else {
            return Err(e.into());
        };
        self.flag(
            "unreadable_file",
            -1,
            None,
            None,
            Some(&path),
            e.to_string(),
        );
        Ok(())
    }

    pub(super) fn load_windows(&mut self) -> Result<(), VerifyError> {
        for path in parquet_files(&self.cfg.report_dir)? {
            match read_window_file(&path) {
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

    fn load_window_file(&mut self, file: crate::readback::Landed<crate::readback::WindowFileRow>) {
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
            self.flag(
                "unreadable_file",
                -1,
                None,
                None,
                Some(&path),
                detail.into(),
            );
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
        let expected_name = self
            .cfg
            .report_dir
            .join(window_file_name(&topic, p, start_ms));
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
        let mut cells = BTreeMap::new();
        for r in &file.rows {
            let mismatch = |detail| ("aggregate_mismatch", detail);
            let problem = if r.window_start_us != start_ms.saturating_mul(1000) {
                Some(mismatch(format!(
                    "campaign {} row has window_start {} µs, but the footer says {} ms",
                    r.campaign_id, r.window_start_us, start_ms
                )))
            } else if let Some(d) = super::identity::aggregate_problem(r) {
                Some(("aggregate_invalid", d))
            } else if cells.insert(r.campaign_id, r.agg).is_some() {
                Some(mismatch(format!("campaign {} has two rows", r.campaign_id)))
            } else {
                None
            };
            if let Some((kind, detail)) = problem {
                let offsets = Some((first, close - 1));
                self.flag(kind, p, Some(start_ms), offsets, Some(&path), detail);
            }
        }
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

    pub(super) fn load_rejects(&mut self) -> Result<(), VerifyError> {
        if !self.cfg.rejects_dir.is_dir() {
            return Ok(());
        }
        for path in parquet_files(&self.cfg.rejects_dir)? {
            let file = match read_reject_file(&path) {
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

    /// One committed record, in offset order within its partition.
    pub(super) fn on_record(&mut self, r: crate::ops::kafka::Scanned<'_>) {
        self.report.records += 1;
        let cfg = self.cfg.window;
        let (p, o) = (r.partition, r.offset);
        let part = self.parts.entry(p).or_default();
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
            if c.bytes != record_hash(r.key, r.value) {
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
        let claim = claims.first().map(|c| (c.reason.clone(), c.path.clone()));
        match decoded {
            Err(e) => match claim {
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
            },
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

    /// After the scan: compare what each window should hold with its file.
    pub(super) fn settle(&mut self) {
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
                for file in &files {
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
}
