//! Durable publish, the one way a file lands: write a temporary file beside the target, fsync
//! it, rename it over the final name, fsync the directory. Readers see the final name only
//! once the whole file is on disk.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::SinkError;
use crate::failpoint;

/// Names of temporary files start with a dot and end in `.tmp`, so `**/*.parquet` globs and
/// Hive-style readers never match them.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.tmp"))
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SinkError + 'a {
    move |source| SinkError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn fsync_dir(dir: &Path) -> Result<(), SinkError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| SinkError::Fsync {
            path: dir.to_path_buf(),
            source,
        })
}

/// Creates `dir` and any missing parents below `root`, making each new entry durable.
pub fn ensure_dir(root: &Path, dir: &Path) -> Result<(), SinkError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur.to_path_buf());
        match cur.parent() {
            Some(p) if p.starts_with(root) || p == root => cur = p,
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

/// Publishes `bytes` at `final_path` (whose directory must exist). A failed fsync is fatal and
/// never retried: after one, the kernel may have dropped the dirty pages.
pub fn publish(final_path: &Path, bytes: &[u8], sync: bool) -> Result<(), SinkError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let tmp = temp_path(final_path);
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    failpoint::hit("after-temp-write");
    if sync {
        f.sync_all().map_err(|source| SinkError::Fsync {
            path: tmp.clone(),
            source,
        })?;
    }
    drop(f);
    failpoint::hit("after-file-fsync");
    fs::rename(&tmp, final_path).map_err(io("rename", final_path))?;
    failpoint::hit("after-rename");
    if sync {
        fsync_dir(dir)?;
    }
    failpoint::hit("after-dir-fsync");
    Ok(())
}

/// Removes temporary files left by a crash between write and rename.
pub fn remove_stale_temps(root: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    if !root.is_dir() {
        return Ok(0);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
            {
                fs::remove_file(&path)?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_leaves_only_the_final_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("date=2024-09-13/hour=06");
        ensure_dir(root.path(), &dir).unwrap();
        let path = dir.join("w.parquet");
        publish(&path, b"hello", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("w.parquet")]);
        fs::write(temp_path(&path), b"partial").unwrap();
        assert_eq!(remove_stale_temps(root.path()).unwrap(), 1);
    }
}
