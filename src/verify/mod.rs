//! `landfall verify`: an audit of the landed output against the log, independent of the state
//! store and of the consumer that wrote it.
//!
//! It reads every partition with read_committed from the beginning up to its end (or given
//! offsets) and replays the window rules over it, using only the files' footers as evidence of
//! when windows closed. Then it checks I1 and I2: every committed record is in exactly one
//! window file (counts, sums, minima and maxima per window and campaign must match) or exactly
//! once in the rejects; no two files cover one (window, partition); no file or reject exists
//! that the log does not explain. Records not landed yet (open windows, buffered rejects) are
//! reported as pending; with `--group`, pending records below the group's committed offset are
//! discrepancies (I4).

mod audit;
mod identity;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::consume::commit::CommitPoint;
use crate::consume::window::WindowConfig;
use crate::ops::kafka::{committed_offsets, scan, topic_id_now, KafkaSettings, ScanError};
use crate::readback::ReadError;
use audit::Audit;

#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub kafka: KafkaSettings,
    /// The report and rejects directories: local, or object-store prefixes.
    pub report: crate::store::Root,
    pub rejects: crate::store::Root,
    pub window: WindowConfig,
    pub limits: crate::consume::decode::Limits,
    /// The consumer group whose committed offsets must not pass unlanded records.
    pub group: Option<String>,
    /// Per partition, audit records below this offset only (default: the end of the log).
    pub until: BTreeMap<i32, i64>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One thing that is wrong with the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    pub kind: &'static str,
    pub partition: i32,
    /// Start of the window concerned, if any (UTC).
    pub window: Option<String>,
    /// First and last offset concerned.
    pub offsets: Option<(i64, i64)>,
    pub path: Option<PathBuf>,
    pub detail: String,
}

/// What the audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub topic: String,
    /// The topic's ID now (None when the cluster gives none).
    pub topic_id: Option<String>,
    /// The end offset (exclusive) audited in each partition.
    pub ends: BTreeMap<i32, i64>,
    /// The group's committed offsets, when a group was given.
    pub committed: BTreeMap<i32, i64>,
    /// Where the group began partitions it started with `--start-from` (from its commits).
    pub starts: BTreeMap<i32, i64>,
    pub records: u64,
    /// Records before the group's start (`--start-from`): not part of the output.
    pub before_start: u64,
    pub counted: u64,
    pub rejected: u64,
    pub window_files: u64,
    pub reject_files: u64,
    /// Records not landed yet: in open windows or buffered rejects, at or past the commit.
    pub pending_records: u64,
    /// Files about records past the audited end, left out.
    pub files_past_end: u64,
    /// Window files of other topics in the same directory, left out.
    pub other_topic_files: u64,
    /// Windows whose partition files span a campaign table change made on purpose
    /// (`--accept-campaigns-change`, recorded in the footers): not a discrepancy.
    pub windows_across_table_change: u64,
    pub discrepancies: Vec<Discrepancy>,
    pub elapsed_ms: u64,
}

impl VerifyReport {
    pub fn clean(&self) -> bool {
        self.discrepancies.is_empty()
    }

    /// The human-readable report; at most `max_listed` discrepancies of each kind are listed.
    pub fn render(&self, max_listed: usize) -> String {
        let mut s = String::new();
        let ends: Vec<String> = self.ends.iter().map(|(p, e)| format!("{p}:{e}")).collect();
        let _ = writeln!(
            s,
            "verify {}: {} read_committed records up to offsets {} in {:.1} s",
            self.topic,
            self.records,
            ends.join(","),
            self.elapsed_ms as f64 / 1000.0
        );
        if self.before_start > 0 {
            let starts: Vec<String> = self
                .starts
                .iter()
                .map(|(p, o)| format!("{p}:{o}"))
                .collect();
            let _ = writeln!(
                s,
                "  before the start:   {} records before the group's --start-from offsets {} (not part of the output)",
                self.before_start,
                starts.join(",")
            );
        }
        let _ = writeln!(
            s,
            "  counted in windows: {} records in {} window files",
            self.counted, self.window_files
        );
        let _ = writeln!(
            s,
            "  rejected:           {} records in {} reject files",
            self.rejected, self.reject_files
        );
        let _ = writeln!(
            s,
            "  pending:            {} records not landed yet (open windows or buffered rejects)",
            self.pending_records
        );
        if self.windows_across_table_change > 0 {
            let _ = writeln!(
                s,
                "  table changes:      {} windows span a campaign table change made with \
                 --accept-campaigns-change",
                self.windows_across_table_change
            );
        }
        if self.files_past_end + self.other_topic_files > 0 {
            let _ = writeln!(
                s,
                "  left out:           {} files past the audited end, {} files of other topics",
                self.files_past_end, self.other_topic_files
            );
        }
        let mut by_kind: BTreeMap<&str, Vec<&Discrepancy>> = BTreeMap::new();
        for d in &self.discrepancies {
            by_kind.entry(d.kind).or_default().push(d);
        }
        let _ = writeln!(s, "  discrepancies:      {}", self.discrepancies.len());
        for (kind, list) in by_kind {
            let _ = writeln!(s, "  {kind}: {}", list.len());
            for d in list.iter().take(max_listed) {
                let _ = write!(s, "    partition {}", d.partition);
                if let Some(w) = &d.window {
                    let _ = write!(s, " window {w}");
                }
                if let Some((a, b)) = d.offsets {
                    let _ = write!(s, " offsets {a}..={b}");
                }
                if let Some(p) = &d.path {
                    let _ = write!(s, " file {}", p.display());
                }
                let _ = writeln!(s, ": {}", d.detail);
            }
            if list.len() > max_listed {
                let _ = writeln!(s, "    ... and {} more", list.len() - max_listed);
            }
        }
        s
    }
}

/// Audits the output; see the module documentation.
pub fn verify(cfg: &VerifyConfig) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let mut audit = Audit::new(cfg, topic_id_now(&cfg.kafka)?);
    // The order makes a live consumer safe to audit: commits are read before the files they
    // rely on, and files before the log end they cannot pass.
    if let Some(group) = &cfg.group {
        let committed = committed_offsets(&cfg.kafka, group)?;
        audit.check_commits(&committed);
        for (p, c) in committed {
            // A partition the group never committed: nothing in it has to have landed yet.
            let o = c.as_ref().map_or(0, |(o, _)| *o);
            // Where `--start-from` began the group: the output starts there.
            let start = c
                .and_then(|(_, meta)| CommitPoint::parse_metadata(&meta))
                .and_then(|m| m.progress.start_offset);
            if let Some(start) = start {
                audit.report.starts.insert(p, start);
            }
            audit.report.committed.insert(p, o);
            let part = audit.parts.entry(p).or_default();
            part.committed = Some(o);
            part.start = start.unwrap_or(0);
        }
    }
    audit.load_windows()?;
    audit.load_rejects()?;
    for part in audit.parts.values_mut() {
        part.closes.sort_unstable();
    }
    let ends = scan(&cfg.kafka, true, &cfg.until, cfg.timeout, |r| {
        audit.on_record(r)
    })?;
    for (p, end) in &ends {
        audit.parts.entry(*p).or_default().end = *end;
    }
    audit.report.ends = ends;
    audit.settle();
    audit.report.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(audit.report)
}
