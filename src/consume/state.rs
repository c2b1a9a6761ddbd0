//! State: the sled store that lets a restart resume where the last checkpoint was, instead of
//! replaying from the committed offset. Each checkpoint is one atomic batch, flushed before the
//! Kafka commit that relies on it. The store is only a cache: Kafka's committed offsets, their
//! metadata and the output directory are enough to rebuild everything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::consume::commit::CommitPoint;
use crate::consume::reject::RejectBuffer;
use crate::consume::window::PartitionWindows;

/// Everything about one partition that a checkpoint saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCheckpoint {
    /// The commit point this checkpoint was written for.
    pub commit: CommitPoint,
    /// Next offset to read.
    pub position: i64,
    pub windows: PartitionWindows,
    pub rejects: RejectBuffer,
    /// The topic ID and campaign table it was written with (absent in older stores).
    #[serde(default)]
    pub topic_id: Option<String>,
    #[serde(default)]
    pub campaigns_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Sled { path: PathBuf, source: sled::Error },
    #[error(
        "state store {path}: {source}. The store was left as it is (it is not corrupt): fix \
         the cause (free space on its disk, say) and restart"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state store {path}: cannot move the unreadable store aside: {source}")]
    MoveAside {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "state store {path} is in use by another process (another consumer instance?): {reason}. \
         Each instance needs its own --state-dir (LANDFALL_STATE_DIR)"
    )]
    InUse { path: PathBuf, reason: String },
    #[error(
        "state store {path}: flushing the checkpoint to disk failed: {source}; nothing past the \
         last checkpoint is committed (a failed flush is not retried)"
    )]
    Flush { path: PathBuf, source: sled::Error },
    #[error("state store {path}: encoding a checkpoint: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Why a store did not open.
enum OpenFailure {
    Locked(String),
    Io(std::io::Error),
    Corrupt(String),
}

#[derive(Clone)]
pub struct StateStore {
    db: sled::Db,
    path: PathBuf,
}

fn key(topic: &str, partition: i32) -> Vec<u8> {
    format!("partition/{topic}/{partition:010}").into_bytes()
}

impl StateStore {
    /// Opens the store. One whose contents cannot be read (truncated, garbled) is moved aside
    /// to `<dir>.unreadable` (replacing an earlier copy, so repeated failures keep one) with a
    /// clear log line and replaced by an empty one: the partitions then rebuild from Kafka. An
    /// I/O error from the system (a full disk, a permission, a failing device) is reported as
    /// what it is and changes nothing: the store may be healthy. One that another process
    /// holds open is an error: moving a live store aside would let two processes write one
    /// directory.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let opened = |db| StateStore {
            db,
            path: path.to_path_buf(),
        };
        let reason = match Self::try_open(path) {
            Ok(db) => return Ok(opened(db)),
            Err(OpenFailure::Locked(reason)) => {
                return Err(StateError::InUse {
                    path: path.to_path_buf(),
                    reason,
                })
            }
            Err(OpenFailure::Io(source)) => {
                return Err(StateError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(OpenFailure::Corrupt(reason)) => reason,
        };
        let aside = path.with_file_name(format!(
            "{}.unreadable",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        error!(
            path = %path.display(),
            moved_to = %aside.display(),
            reason = %reason,
            "state store is unreadable; moving it aside and rebuilding from Kafka's \
             committed offsets and the output directory"
        );
        let move_aside = || -> std::io::Result<()> {
            if aside.exists() {
                std::fs::remove_dir_all(&aside)?;
            }
            std::fs::rename(path, &aside)
        };
        move_aside().map_err(|source| StateError::MoveAside {
            path: path.to_path_buf(),
            source,
        })?;
        match Self::try_open(path) {
            Ok(db) => Ok(opened(db)),
            Err(OpenFailure::Io(source)) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
            Err(OpenFailure::Locked(reason) | OpenFailure::Corrupt(reason)) => {
                Err(StateError::Sled {
                    path: path.to_path_buf(),
                    source: sled::Error::Unsupported(format!(
                        "cannot create a new store: {reason}"
                    )),
                })
            }
        }
    }

    fn try_open(path: &Path) -> Result<sled::Db, OpenFailure> {
        // sled may panic on some corruptions rather than return an error.
        let p = path.to_path_buf();
        // No background flusher: every checkpoint flushes explicitly (`checkpoint`), and sled's
        // flusher thread fsyncs on its own every 500 ms, logging a failure and trying again at
        // the next tick: a retried fsync (I6), and one the fault tests could not tell apart
        // from Landfall's own.
        let opened = std::panic::catch_unwind(move || {
            sled::Config::new().path(p).flush_every_ms(None).open()
        });
        match opened {
            Ok(Ok(db)) => Ok(db),
            Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                Err(OpenFailure::Locked(e.to_string()))
            }
            // An error the system reported (ENOSPC, EIO, EACCES…) says nothing about the
            // store's contents.
            Ok(Err(sled::Error::Io(e))) if e.raw_os_error().is_some() => Err(OpenFailure::Io(e)),
            Ok(Err(e)) => Err(OpenFailure::Corrupt(e.to_string())),
            Err(_) => Err(OpenFailure::Corrupt(
                "sled panicked while opening it".to_string(),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The partition's last checkpoint, if there is one and it can be read.
    pub fn load(&self, topic: &str, partition: i32) -> Option<PartitionCheckpoint> {
        let bytes = match self.db.get(key(topic, partition)) {
            Ok(b) => b?,
            Err(e) => {
                warn!(partition, error = %e, "cannot read the partition's checkpoint; rebuilding it");
                return None;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(partition, error = %e, "the partition's checkpoint is garbled; rebuilding it");
                None
            }
        }
    }

    /// Writes every given checkpoint in one atomic batch, then flushes it to disk.
    pub fn checkpoint<'a>(
        &self,
        topic: &str,
        parts: impl IntoIterator<Item = (i32, &'a PartitionCheckpoint)>,
    ) -> Result<(), StateError> {
        let mut batch = sled::Batch::default();
        for (partition, cp) in parts {
            let bytes = serde_json::to_vec(cp).map_err(|source| StateError::Encode {
                path: self.path.clone(),
                source,
            })?;
            batch.insert(key(topic, partition), bytes);
        }
        let sled_err = |source| StateError::Sled {
            path: self.path.clone(),
            source,
        };
        self.db.apply_batch(batch).map_err(sled_err)?;
        crate::ops::failpoint::hit("after-sled-batch");
        self.db.flush().map_err(|source| StateError::Flush {
            path: self.path.clone(),
            source,
        })?;
        crate::ops::failpoint::hit("after-sled-flush");
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_held_by_another_opener_is_refused_not_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let first = StateStore::open(&path).unwrap();
        let err = StateStore::open(&path).err().expect("second open refused");
        assert!(matches!(err, StateError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("--state-dir"), "{err}");
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 1, "nothing was moved aside");
        drop(first);
        StateStore::open(&path).unwrap();
    }

    #[test]
    fn a_garbled_store_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("conf"), b"\xff\xff garbage").unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        let store = StateStore::open(&path).unwrap();
        assert!(store.load("t", 0).is_none());
        let moved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("state.unreadable")
            })
            .count();
        assert_eq!(moved, 1);
        // Garbled again: still one copy aside.
        drop(store);
        std::fs::remove_dir_all(&path).unwrap();
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("conf"), b"\xff\xff garbage").unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        StateStore::open(&path).unwrap();
        let entries = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(entries, 2, "the store and one copy aside");
    }
}
