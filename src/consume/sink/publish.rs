//! Durable publish, the one way a file lands: write a temporary file beside the target, fsync
//! it, link it to the final name (which fails if the name exists, so a landed file is never
//! replaced); then fsync the directory. A group of files goes through each step together (see
//! `group`): the fsyncs at once, one directory fsync for all. Readers see the final name only
//! once the whole file is on disk.
//!
//! On Linux the temporary file has no name at all (`O_TMPFILE`): it is linked to its final
//! name through `/proc/self/fd`, so a file costs one directory operation instead of three
//! (create, link, unlink), no listing ever shows it, and a crash leaves nothing behind (the
//! speed it gains is within a drain's noise: docs/performance.md, ninth round). Where the file
//! system or the kernel has no `O_TMPFILE`, or `/proc` is not mounted, the temporary file is
//! named (a dot, the final name, `.tmp`) and removed after the link.

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

/// A file written beside its final name, not yet fsynced, not yet linked. Dropped before it is
/// linked, it leaves nothing behind: an unnamed file goes with its descriptor, a named one is
/// removed (a full disk is not kept full by debris).
pub struct Staged {
    temp: Temp,
    file: File,
    final_path: PathBuf,
    len: u64,
}

/// The temporary file: unnamed (`O_TMPFILE`), or under a temporary name.
enum Temp {
    Unnamed,
    Named(PathBuf),
}

/// Writes `bytes` to a temporary file beside `final_path`, creating its directory below
/// `root` first if it is missing (found by the create failing, so a file whose directory
/// exists costs no lookup of it).
pub fn stage(
    root: &Path,
    final_path: &Path,
    bytes: &[u8],
    hit: impl Fn(&str),
) -> Result<Staged, SinkError> {
    let unnamed = cfg!(target_os = "linux") && !crate::ops::failpoint::named_temp_files();
    stage_as(root, final_path, bytes, hit, unnamed)
}

/// [`stage`], with an unnamed temporary file only if `unnamed` (and the system has them).
fn stage_as(
    root: &Path,
    final_path: &Path,
    bytes: &[u8],
    hit: impl Fn(&str),
    unnamed: bool,
) -> Result<Staged, SinkError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let (temp, file) = match create_temp(dir, final_path, unnamed) {
        Err((e, _)) if e.kind() == std::io::ErrorKind::NotFound => {
            ensure_dir(root, dir)?;
            create_temp(dir, final_path, unnamed)
        }
        created => created,
    }
    .map_err(|(e, temp)| io("create", &temp.shown(final_path))(e))?;
    let staged = Staged {
        temp,
        file,
        final_path: final_path.to_path_buf(),
        len: bytes.len() as u64,
    };
    hit("before-temp-write");
    if let Err(e) = (&staged.file).write_all(bytes) {
        // Nothing has happened since the failed write (a full disk, say).
        hit("after-failed-write");
        return Err(io("write", &staged.temp_path())(e));
    }
    hit("after-temp-write");
    Ok(staged)
}

/// A new temporary file in `dir` for `final_path`: unnamed where the system allows it, named
/// otherwise. On failure, the error and the file it was for.
fn create_temp(
    dir: &Path,
    final_path: &Path,
    try_unnamed: bool,
) -> Result<(Temp, File), (std::io::Error, Temp)> {
    #[cfg(target_os = "linux")]
    if try_unnamed && unnamed::usable() {
        match unnamed::create(dir) {
            Ok(file) => return Ok((Temp::Unnamed, file)),
            Err(e) if unnamed::unsupported(&e) => unnamed::give_up(dir, &e),
            Err(e) => return Err((e, Temp::Unnamed)),
        }
    }
    let tmp = temp_path(final_path);
    match File::create_new(&tmp) {
        Ok(file) => Ok((Temp::Named(tmp), file)),
        Err(e) => Err((e, Temp::Named(tmp))),
    }
}

impl Temp {
    /// What messages name: the temporary name, or `<final path> (unnamed temporary file)`.
    fn shown(&self, final_path: &Path) -> PathBuf {
        match self {
            Temp::Unnamed => {
                let mut s = final_path.as_os_str().to_owned();
                s.push(" (unnamed temporary file)");
                PathBuf::from(s)
            }
            Temp::Named(tmp) => tmp.clone(),
        }
    }
}

/// Temporary files without a name: `O_TMPFILE`, linked through `/proc/self/fd`.
#[cfg(target_os = "linux")]
mod unnamed {
    use std::fs::{File, OpenOptions};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Set once a create has said the system has no `O_TMPFILE`; every file is named after.
    static GIVEN_UP: AtomicBool = AtomicBool::new(false);

    /// Whether to try an unnamed file: `/proc/self/fd` is needed to link it, and no create has
    /// failed for want of support.
    pub fn usable() -> bool {
        static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        !GIVEN_UP.load(Ordering::Relaxed)
            && *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir())
    }

    pub fn create(dir: &Path) -> std::io::Result<File> {
        // Mode 0666 less the umask, as `File::create` gives a named file.
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o666)
            .open(dir)
    }

    /// The errors a kernel or file system without `O_TMPFILE` gives (open(2)): EOPNOTSUPP from
    /// the file system, EISDIR from a kernel that takes the flag for `O_DIRECTORY` alone.
    pub fn unsupported(e: &std::io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
        )
    }

    pub fn give_up(dir: &Path, e: &std::io::Error) {
        if !GIVEN_UP.swap(true, Ordering::Relaxed) {
            tracing::info!(
                dir = %dir.display(),
                error = %e,
                "no unnamed temporary files (O_TMPFILE) here: each file is written under a temporary name"
            );
        }
    }

    /// Links the open, unnamed `file` to `to`; fails with AlreadyExists if the name is taken.
    pub fn link(file: &File, to: &Path) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let from = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = std::ffi::CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: two NUL-terminated paths that live across the call.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl Staged {
    /// The temporary file, as messages name it.
    fn temp_path(&self) -> PathBuf {
        self.temp.shown(&self.final_path)
    }

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
            path: self.temp_path(),
            source: std::io::Error::last_os_error(),
        })
    }

    /// The device of the file system this file is on.
    pub fn device(&self) -> Result<u64, SinkError> {
        use std::os::unix::fs::MetadataExt;
        self.file
            .metadata()
            .map(|m| m.dev())
            .map_err(io("stat", &self.temp_path()))
    }

    /// Fsyncs the temporary file. A failed fsync is fatal and never retried: after one, the
    /// kernel may have dropped the dirty pages.
    pub fn sync(&self) -> Result<(), SinkError> {
        self.file.sync_all().map_err(|source| SinkError::Fsync {
            path: self.temp_path(),
            source,
        })
    }

    /// Links the file to its final name (and removes a temporary name). Returns false, and
    /// changes nothing under the final name, if the name exists already. The name is durable
    /// only once the caller has fsynced the directory ([`fsync_dir`]).
    pub fn link(self, hit: impl Fn(&str)) -> Result<bool, SinkError> {
        let linked = match &self.temp {
            #[cfg(target_os = "linux")]
            Temp::Unnamed => unnamed::link(&self.file, &self.final_path),
            #[cfg(not(target_os = "linux"))]
            Temp::Unnamed => unreachable!("unnamed temporary files are Linux's"),
            Temp::Named(tmp) => fs::hard_link(tmp, &self.final_path),
        };
        let linked = match linked {
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
        if let Temp::Named(tmp) = &self.temp {
            let _ = fs::remove_file(tmp);
        }
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

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Both kinds of temporary file: staged, nothing under the final name; dropped, nothing
    /// left; linked, the final name only, never replacing a file already there.
    #[test]
    fn a_staged_file_shows_only_once_linked_and_leaves_nothing_when_dropped() {
        for unnamed in [true, false] {
            let root = tempfile::tempdir().unwrap();
            let dir = root.path().join("date=2024-09-13");
            let path = dir.join("w.parquet");
            let staged = stage_as(root.path(), &path, b"hello", |_| {}, unnamed).unwrap();
            assert!(dir.is_dir(), "the missing directory was not created");
            assert!(!path.exists());
            // On Linux (ext4, tmpfs, xfs, btrfs all have O_TMPFILE) the file has no name.
            if unnamed && cfg!(target_os = "linux") {
                assert_eq!(
                    names(&dir),
                    Vec::<String>::new(),
                    "a temporary name was made"
                );
            } else {
                assert_eq!(names(&dir).len(), 1);
            }
            drop(staged);
            assert_eq!(names(&dir), Vec::<String>::new(), "unnamed: {unnamed}");
            let staged = stage_as(root.path(), &path, b"hello", |_| {}, unnamed).unwrap();
            staged.sync().unwrap();
            assert!(staged.link(|_| {}).unwrap());
            let again = stage_as(root.path(), &path, b"other", |_| {}, unnamed).unwrap();
            assert!(!again.link(|_| {}).unwrap());
            assert_eq!(fs::read(&path).unwrap(), b"hello");
            assert_eq!(
                names(&dir),
                vec!["w.parquet".to_string()],
                "unnamed: {unnamed}"
            );
        }
    }

    /// An error about an unnamed temporary file names the file it was for.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_unnamed_file_is_named_in_errors_by_its_final_path() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("w.parquet");
        let staged = stage(root.path(), &path, b"hello", |_| {}).unwrap();
        assert_eq!(
            staged.temp_path(),
            Path::new(&format!("{} (unnamed temporary file)", path.display()))
        );
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
