//! Durable publish, the one way a file lands: write a temporary file beside the target, fsync
//! it, link it to the final name (which fails if the name exists, so a landed file is never
//! replaced), remove the temporary name; then fsync the directory. A group of files goes
//! through each step together (see `group`): the fsyncs at once, one directory fsync for all.
//! Readers see the final name only once the whole file is on disk.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::SinkError;

/// Temporary files older than this are debris from a crash; younger ones may belong to another
/// instance that is writing right now.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Names of temporary files start with a dot and end in `.tmp`, so `**/*.parquet` globs and
/// Hive-style readers never match them. The process id and a counter keep two writers (a
/// zombie and its successor) from ever sharing one.
pub fn temp_path(final_path: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    final_path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub fn fsync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SinkError::Fsync {
            path: dir.to_path_buf(),
            source,
        })
}

/// Creates `dir` and any missing parents below `root`, making each new entry durable. `root`
/// itself must exist: if it has gone (removed or unmounted under a running consumer), writing
/// a fresh tree in its place would hide the loss, so that is an error.
pub fn ensure_dir(root: &Path, dir: &Path) -> Result<(), SinkError> {
    if dir.is_dir() {
        return Ok(());
    }
    if !root.is_dir() {
        return Err(SinkError::RootGone {
            path: root.to_path_buf(),
        });
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if p.starts_with(root) => cur = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(io("create directory", dir))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent() {
            fsync_dir(parent)?;
        }
    }
    Ok(())
}

/// A file written under its temporary name beside its final name: not yet fsynced, not yet
/// linked. Dropped before it is linked, it removes its temporary name (a full disk is not
/// kept full by debris).
pub struct Staged {
    tmp: PathBuf,
    file: File,
    final_path: PathBuf,
    len: u64,
}

/// Writes `bytes` under a temporary name beside `final_path`, creating its directory below
/// `root` first if it is missing (found by the create failing, so a file whose directory
/// exists costs no lookup of it).
pub fn stage(
    root: &Path,
    final_path: &Path,
    bytes: &[u8],
    hit: impl Fn(&str),
) -> Result<Staged, SinkError> {
    let tmp = temp_path(final_path);
    let file = match File::create(&tmp) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = final_path.parent() {
                ensure_dir(root, dir)?;
            }
            File::create(&tmp)
        }
        created => created,
    }
    .map_err(io("create", &tmp))?;
    let staged = Staged {
        tmp,
        file,
        final_path: final_path.to_path_buf(),
        len: bytes.len() as u64,
    };
    hit("before-temp-write");
    if let Err(e) = (&staged.file).write_all(bytes) {
        // Nothing has happened since the failed write (a full disk, say).
        hit("after-failed-write");
        return Err(io("write", &staged.tmp)(e));
    }
    hit("after-temp-write");
    Ok(staged)
}

impl Staged {
    pub fn bytes(&self) -> u64 {
        self.len
    }

    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Starts writing the file's pages to disk without waiting for them, so that the disk works
    /// while the next files of the group are encoded and written, and the group's fsyncs find
    /// the data on its way. Only a hint: the fsync that follows makes the file durable and
    /// reports any error (`SYNC_FILE_RANGE_WRITE` alone neither waits nor clears one).
    /// Measured in docs/performance.md: 15% off a sparse drain with per-file fsyncs; with
    /// one syncfs per group it costs more than it saves, since each file's writeback then
    /// goes to the disk on its own instead of with the group's.
    pub fn start_writeback(&self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: a system call on a descriptor this value owns, with no pointer.
            unsafe {
                libc::sync_file_range(self.file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
            };
        }
    }

    /// Syncs the file system this file is on (syncfs(2)): every dirty page and inode on it,
    /// this file's included, is on disk when it returns. Fatal and never retried, as a failed
    /// fsync is.
    pub fn sync_file_system(&self) -> Result<(), SinkError> {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is this open file's, valid for the call.
        if unsafe { libc::syncfs(self.file.as_raw_fd()) } == 0 {
            return Ok(());
        }
        Err(SinkError::SyncFs {
            path: self.tmp.clone(),
            source: std::io::Error::last_os_error(),
        })
    }

    /// The device of the file system this file is on.
    pub fn device(&self) -> Result<u64, SinkError> {
        use std::os::unix::fs::MetadataExt;
        self.file
            .metadata()
            .map(|m| m.dev())
            .map_err(io("stat", &self.tmp))
    }

    /// Fsyncs the temporary file. A failed fsync is fatal and never retried: after one, the
    /// kernel may have dropped the dirty pages.
    pub fn sync(&self) -> Result<(), SinkError> {
        self.file.sync_all().map_err(|source| SinkError::Fsync {
            path: self.tmp.clone(),
            source,
        })
    }

    /// Links the file to its final name and removes the temporary name. Returns false, and
    /// changes nothing under the final name, if the name exists already. The name is durable
    /// only once the caller has fsynced the directory ([`fsync_dir`]).
    pub fn link(self, hit: impl Fn(&str)) -> Result<bool, SinkError> {
        let linked = match fs::hard_link(&self.tmp, &self.final_path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(io("link", &self.final_path)(e)),
        };
        drop(self);
        hit("after-rename");
        Ok(linked)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Publishes `bytes` at `final_path` (whose directory must exist), directory fsync included,
/// without the recovery suite's crash points (for the directory marker, which is not part of
/// the landing protocol). Returns false, and changes nothing, if the name exists already.
pub fn publish_plain(final_path: &Path, bytes: &[u8], sync: bool) -> Result<bool, SinkError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    // The directory is the root here: a missing one is an error, not created.
    let staged = stage(dir, final_path, bytes, |_| {})?;
    if sync {
        staged.sync()?;
    }
    let linked = staged.link(|_| {})?;
    if linked && sync {
        fsync_dir(dir)?;
    }
    Ok(linked)
}

/// Fsyncs a file found under its final name. It may have been linked by a run that crashed
/// before its directory fsync (or by another instance that is about to): nothing may be
/// committed past it until it and (by the caller) its directory are on disk.
pub fn sync_file(path: &Path) -> Result<(), SinkError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| SinkError::Fsync {
            path: path.to_path_buf(),
            source,
        })
}

/// Removes temporary files older than `max_age`: left by a crash between write and link.
/// Another instance starting at the same moment sweeps the same files, so an entry that is
/// gone by the time it is looked at or removed is simply gone.
pub fn remove_stale_temps(root: &Path, max_age: Duration) -> std::io::Result<usize> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut removed = 0;
    if !root.is_dir() {
        return Ok(0);
    }
    for entry in walkdir::WalkDir::new(root) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.io_error().is_some_and(gone) => continue,
            Err(e) => return Err(e.into()),
        };
        let is_temp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        if entry.file_type().is_dir() || !is_temp {
            continue;
        }
        let modified = match entry.metadata() {
            Ok(m) => m.modified().ok(),
            Err(e) if e.io_error().is_some_and(gone) => continue,
            Err(e) => return Err(e.into()),
        };
        let old = modified
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= max_age);
        if old {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if gone(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_leaves_only_the_final_file_and_never_replaces_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("date=2024-09-13/hour=06");
        ensure_dir(root.path(), &dir).unwrap();
        let path = dir.join("w.parquet");
        assert!(publish_plain(&path, b"hello", true).unwrap());
        assert!(!publish_plain(&path, b"other", true).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("w.parquet")]);
        fs::write(temp_path(&path), b"partial").unwrap();
        assert_eq!(remove_stale_temps(root.path(), STALE_TEMP_AGE).unwrap(), 0);
        assert_eq!(remove_stale_temps(root.path(), Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn a_vanished_root_is_an_error_not_recreated() {
        let root = tempfile::tempdir().unwrap();
        let report = root.path().join("report");
        let err = ensure_dir(&report, &report.join("date=2024-09-13")).unwrap_err();
        assert!(matches!(err, SinkError::RootGone { .. }), "{err}");
        assert!(!report.exists());
    }

    /// Two instances starting at once sweep the same stale temporary files: each must take
    /// the other's removals in its stride.
    #[test]
    fn two_sweeps_at_once_both_succeed() {
        let root = tempfile::tempdir().unwrap();
        for h in 0..4 {
            let dir = root.path().join(format!("date=2024-09-13/hour=0{h}"));
            fs::create_dir_all(&dir).unwrap();
            for i in 0..1500 {
                fs::write(dir.join(format!(".w{i}.parquet.1-{i}.tmp")), b"x").unwrap();
            }
        }
        let sweeps: Vec<_> = (0..2)
            .map(|_| {
                let r = root.path().to_path_buf();
                std::thread::spawn(move || remove_stale_temps(&r, Duration::ZERO))
            })
            .collect();
        let removed: usize = sweeps
            .into_iter()
            .map(|t| t.join().unwrap().expect("a concurrent sweep fails"))
            .sum();
        assert_eq!(removed, 6000);
    }
}
