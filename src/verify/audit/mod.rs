//! The replay behind `verify`: the files' claims, loaded first, then each committed record
//! checked against them in offset order, then every window's expected aggregates compared with
//! its file.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::identity::{Evidence, Tables};

mod load;
mod replay;
mod settle;

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
    /// The group's start (`--start-from`): records before it are not audited.
    pub(super) start: i64,
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

    /// `path` is not a file the audit can use: named, with why.
    fn flag_unreadable(&mut self, path: &Path, detail: String) {
        self.flag("unreadable_file", -1, None, None, Some(path), detail);
    }

    /// A file that cannot be read is a discrepancy that names it, never the end of the audit.
    fn unreadable(&mut self, e: ReadError) -> Result<(), VerifyError> {
        let Some(path) = e.file().map(Path::to_path_buf) else {
            return Err(e.into());
        };
        self.flag_unreadable(&path, e.to_string());
        Ok(())
    }
}
