//! Group landing: the files that one batch of records closes land together, step by step.
//! On local disk the group's files are encoded at once on a few threads (encoding is CPU
//! only and most of what a small file costs); then each is written to its temporary file,
//! one after another, its pages sent to the disk without waiting when each file gets an fsync
//! of its own (see `publish::Staged::start_writeback`); then the temporary files are fsynced
//! all at once on a small pool of threads, so the journal commits them together instead of
//! one after another (or, with `--fsync file-system`, one syncfs writes them back together);
//! then each is linked to its final name, in order; then every directory touched is fsynced
//! once. An object store instead gets its conditional PUTs, several in flight at once. Only
//! after that does the pipeline checkpoint and commit, exactly as for a single file: "durable,
//! then state, then commit" holds for the group as a whole, and a crash anywhere inside a
//! group leaves nothing committed past any of its files.
//!
//! The directory operations (create, link, unlink) stay on one thread on purpose: run from
//! several threads in one directory they contend for its lock, and on two cores that cost more
//! than the overlap gained (measured in docs/performance.md).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{publish, FsyncScope, Landed, Sink, SinkError, TableChange};
use crate::consume::reject::RejectRecord;
use crate::consume::window::ClosedWindow;
use crate::identity::Expected;
use crate::ops::failpoint;
use crate::store::Root;

/// Temporary files fsynced at once: enough for the journal to commit a group's files
/// together; the threads wait on the disk, not on a core.
pub const FSYNC_THREADS: usize = 4;
/// PUTs in flight at once to an object store, where each waits tens of milliseconds on the
/// network rather than on a core.
pub const OBJECT_CONCURRENCY: usize = 16;

/// A file waiting to land.
#[derive(Debug)]
pub struct Pending {
    pub partition: i32,
    pub change: TableChange,
    pub what: Contents,
}

#[derive(Debug)]
pub enum Contents {
    Window(ClosedWindow),
    /// The rejects cut at `close_offset`.
    Rejects {
        close_offset: i64,
        records: Vec<RejectRecord>,
    },
}

impl Pending {
    /// The offset the file was closed at: what a replay that meets it has reached.
    pub fn close_offset(&self) -> i64 {
        match &self.what {
            Contents::Window(w) => w.close_offset,
            Contents::Rejects { close_offset, .. } => *close_offset,
        }
    }

    /// Rows the file will hold.
    pub fn rows(&self) -> usize {
        match &self.what {
            Contents::Window(w) => w.by_campaign.len(),
            Contents::Rejects { records, .. } => records.len(),
        }
    }
}

/// What landing one file did, and the directory that must be fsynced before it counts.
pub(super) type Outcome = (Landed, Option<PathBuf>);

/// How far a file got on its own.
pub(super) enum Step {
    Done(Outcome),
    /// Written to its temporary file on local disk: to fsync, link, then its directory.
    Staged(Box<StagedFile>),
}

pub(super) struct StagedFile {
    pub staged: publish::Staged,
    pub root: Root,
    /// The local root directory, to tell a vanished root from a failed write.
    pub local: PathBuf,
    pub rows: u64,
    pub want: Expected,
    pub table_change_ok: bool,
}

impl Sink {
    /// Lands `group`, returning what happened to each file in order, or the first error (in
    /// the group's order). After an error some files of the group may have landed, some not;
    /// the caller commits nothing past any of them (the pipeline is poisoned), and a replay
    /// finds the landed ones and checks their footers, as after a crash.
    pub fn land_group(&self, group: &[Pending]) -> Result<Vec<Landed>, SinkError> {
        let (steps, failed) = if self.concurrency <= 1 {
            self.stage_group(group)?
        } else {
            (
                pool(group, self.concurrency, |p| self.land_pending(p, None))?,
                None,
            )
        };
        let staged: Vec<&publish::Staged> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Staged(f) => Some(&f.staged),
                Step::Done(_) => None,
            })
            .collect();
        if self.sync && !staged.is_empty() {
            // Every temporary file of the group is written; none is fsynced.
            failpoint::hit("before-file-fsync");
            self.make_durable(&staged)?;
            // Every temporary file of the group is durable; none is linked.
            failpoint::hit("after-file-fsync");
        }
        let total = steps.len();
        let mut outcomes = Vec::with_capacity(total);
        for (i, step) in steps.into_iter().enumerate() {
            outcomes.push(match step {
                Step::Done(outcome) => outcome,
                Step::Staged(f) => {
                    let outcome = self.link(*f)?;
                    if i + 1 < total {
                        // This file is linked (not durable under its name yet); the next is not.
                        failpoint::hit("between-group-files");
                    }
                    outcome
                }
            });
        }
        let dirs: BTreeSet<&PathBuf> = outcomes.iter().filter_map(|(_, d)| d.as_ref()).collect();
        if !dirs.is_empty() {
            // Every file is written, fsynced and linked; no name is durable yet.
            failpoint::hit("after-group-files");
            for dir in dirs {
                publish::fsync_dir(dir)?;
            }
            failpoint::hit("after-dir-fsync");
        }
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(outcomes.into_iter().map(|(landed, _)| landed).collect())
    }

    /// Makes the group's written temporary files durable, as `--fsync` says: an fsync each,
    /// a few at once, or one syncfs per file system they are on (the report and the rejects
    /// may be on two).
    fn make_durable(&self, staged: &[&publish::Staged]) -> Result<(), SinkError> {
        match self.fsync_scope {
            FsyncScope::PerFile => pool(staged, FSYNC_THREADS, |s| s.sync()).map(drop),
            FsyncScope::FileSystem => {
                let mut synced = BTreeSet::new();
                for s in staged {
                    if synced.insert(s.device()?) {
                        s.sync_file_system()?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Local disk: encodes the group's files on [`encode_threads`] threads (CPU only, no
    /// directory is touched), then writes each to its temporary file in order, on this
    /// thread. A failed write (a full disk) ends the staging; the files written before it
    /// still land, as many as fit, before the error is returned.
    fn stage_group(&self, group: &[Pending]) -> Result<(Vec<Step>, Option<SinkError>), SinkError> {
        // A file already at its name is not encoded: landing reads its footer instead.
        let encoded = pool(group, encode_threads(), |p| {
            let (root, rel, _) = self.target(p);
            let there = root.local().is_some() && root.join(&rel).exists();
            Ok((!there).then(|| self.encode_pending(p)))
        })?;
        let mut steps = Vec::with_capacity(group.len());
        for (p, bytes) in group.iter().zip(encoded) {
            match self.land_pending(p, bytes) {
                Ok(step) => steps.push(step),
                Err(e) => return Ok((steps, Some(e))),
            }
        }
        Ok((steps, None))
    }
}

/// Threads that encode a group's files on local disk: the cores, up to 4. Encoding is most
/// of what a small file costs, and it needs no lock.
pub fn encode_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// `f` over `items` on at most `workers` threads (this one included), results in order; the
/// first error in order. After an error no further item is started.
fn pool<T: Sync, R: Send>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<R, SinkError> + Sync,
) -> Result<Vec<R>, SinkError> {
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<R, SinkError>>>> =
        items.iter().map(|_| Mutex::new(None)).collect();
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= items.len() || failed.load(Ordering::Relaxed) {
            return;
        }
        let result = f(&items[i]);
        failed.fetch_or(result.is_err(), Ordering::Relaxed);
        *results[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    };
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    let mut out = Vec::with_capacity(items.len());
    for slot in results {
        // An empty slot was never started: another item failed first, and its error comes.
        if let Some(result) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            out.push(result?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::consume::enrich::CampaignTable;
    use crate::consume::window::Agg;
    use crate::store::Root;

    fn sink(root: &std::path::Path, concurrency: usize) -> Sink {
        let table = CampaignTable::parse(
            &root.join("campaigns.csv"),
            b"network_id,campaign_id,campaign_name\n1,10,Campaign 10\n",
        )
        .unwrap();
        let identity = crate::consume::sink::test_identity(&table);
        for d in ["report", "rejects"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        Sink {
            report: Root::Local(root.join("report")),
            rejects: Root::Local(root.join("rejects")),
            identity,
            table: Arc::new(table),
            sync: true,
            fsync_scope: FsyncScope::PerFile,
            look_first: false,
            concurrency,
        }
    }

    /// Windows of two partitions over three hours (three directories).
    fn group() -> Vec<Pending> {
        (0..40)
            .map(|i: i64| {
                let start_ms = 1_700_000_000_000 / 60_000 * 60_000 + (i / 2) * 9 * 60_000;
                let agg = Agg {
                    count: 1,
                    sum_ms: 1000,
                    min_ms: 1000,
                    max_ms: 1000,
                };
                Pending {
                    partition: (i % 2) as i32,
                    change: TableChange::default(),
                    what: Contents::Window(ClosedWindow {
                        start_ms,
                        end_ms: start_ms + 60_000,
                        first_offset: i,
                        close_offset: i + 1,
                        watermark_ms: start_ms + 60_000,
                        closed_by_idle: false,
                        late_total: 0,
                        by_campaign: BTreeMap::from([(10, agg)]),
                    }),
                }
            })
            .collect()
    }

    fn files(root: &std::path::Path) -> BTreeMap<PathBuf, Vec<u8>> {
        walkdir::WalkDir::new(root.join("report"))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| (e.path().to_path_buf(), std::fs::read(e.path()).unwrap()))
            .collect()
    }

    /// The files under `root/report`, by their path below `root`.
    fn relative_files(root: &std::path::Path) -> BTreeMap<PathBuf, Vec<u8>> {
        files(root)
            .into_iter()
            .map(|(p, b)| (p.strip_prefix(root).unwrap().to_path_buf(), b))
            .collect()
    }

    /// `--fsync file-system`: a group made durable by one syncfs lands the same files, with
    /// no temporary file left.
    #[test]
    fn a_group_synced_by_its_file_system_lands_the_same_files() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let per_file = sink(a.path(), 1);
        let mut whole = sink(b.path(), 1);
        whole.fsync_scope = FsyncScope::FileSystem;
        let g = group();
        per_file.land_group(&g).unwrap();
        whole.land_group(&g).unwrap();
        assert_eq!(relative_files(b.path()).len(), 40);
        assert_eq!(relative_files(b.path()), relative_files(a.path()));
    }

    /// A group lands the same files as landing them one by one, in order, and landing it
    /// again finds every one of them there.
    #[test]
    fn a_group_lands_what_one_at_a_time_lands_and_a_replay_finds_it() {
        let (one, many) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (s1, s8) = (sink(one.path(), 1), sink(many.path(), 8));
        let g = group();
        let landed = s8.land_group(&g).unwrap();
        assert!(landed
            .iter()
            .all(|l| matches!(l, Landed::Written { rows: 1, .. })));
        s1.land_group(&g).unwrap();
        assert_eq!(relative_files(many.path()).len(), 40);
        assert_eq!(relative_files(many.path()), relative_files(one.path()));
        let again = s8.land_group(&g).unwrap();
        assert!(again
            .iter()
            .all(|l| matches!(l, Landed::AlreadyThere { .. })));
        // Only final names: no temporary file is left by a group.
        assert_eq!(files(many.path()).len(), 40);
    }

    /// A foreign file under one name of a group: the group fails naming that file, and what
    /// the other files did is not reported as landed.
    #[test]
    fn a_foreign_file_in_a_group_fails_it_naming_the_file() {
        let root = tempfile::tempdir().unwrap();
        let s = sink(root.path(), 4);
        let g = group();
        s.land_group(&g[..1]).unwrap();
        let first = files(root.path()).into_keys().next().unwrap();
        std::fs::write(&first, b"not parquet").unwrap();
        let err = s.land_group(&g).unwrap_err();
        assert!(
            matches!(&err, SinkError::Unreadable { path, .. } if *path == first),
            "{err}"
        );
    }
}
