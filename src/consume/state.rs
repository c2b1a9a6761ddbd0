//! State: the sled store that lets a restart resume where the last checkpoint was, instead of
//! replaying from the committed offset. Each checkpoint is one atomic batch, flushed before the
//! Kafka commit that relies on it. The store is only a cache: Kafka's committed offsets, their
//! metadata and the output directory are enough to rebuild everything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, warn};

use crate::consume::sink::RejectRecord;
use crate::consume::window::{IdleMark, PartitionWindows, Progress};
use crate::identity::Identity;

/// Where a replay must start, and the partition's progress just before that offset. This is
/// what the Kafka commit carries (offset, plus metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPoint {
    pub offset: i64,
    pub progress: Progress,
}

const META_PREFIX: &str = "landfall/1";

/// What a Kafka commit's metadata says, besides the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMeta {
    pub progress: Progress,
    /// The settings signature (see `identity::Settings`).
    pub settings: String,
    /// The topic ID the commit was made for; None in commits of versions before topic IDs.
    pub topic_id: Option<String>,
    /// The campaign table's SHA-256; None in commits of versions before it was recorded.
    pub campaigns_sha256: Option<String>,
    /// The table `--accept-campaigns-change` replaced, while files of it may still be met.
    pub campaigns_replaced: Option<String>,
}

impl CommitPoint {
    /// The commit metadata string: `landfall/1 wm=<ms> max=<ms> late=<n> sig=<settings>
    /// tid=<topic id> tbl=<campaign table sha256>`, plus ` idle=<offset>@<ms>,...` when idle
    /// closes follow the committed offset. Kafka keeps up to 4,096 bytes of it
    /// (`offset.metadata.max.bytes`).
    ///
    /// `replaced` is the campaign table `--accept-campaigns-change` replaced, while a replay
    /// from this commit may still find files landed with it: recorded as ` was=<sha256>`, so a
    /// restart keeps them without the flag.
    pub fn metadata(&self, id: &Identity, replaced: Option<&str>) -> String {
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let mut meta = format!(
            "{META_PREFIX} wm={} max={} late={} sig={}",
            opt(self.progress.watermark_ms),
            opt(self.progress.max_event_ms),
            self.progress.late_total,
            id.settings.signature()
        );
        if let Some(tid) = &id.topic_id {
            meta.push_str(" tid=");
            meta.push_str(tid);
        }
        meta.push_str(" tbl=");
        meta.push_str(&id.campaigns_sha256);
        if let Some(old) = replaced {
            meta.push_str(" was=");
            meta.push_str(old);
        }
        let marks: Vec<String> = self
            .progress
            .idle_marks
            .iter()
            .map(|m| format!("{}@{}", m.at_offset, m.watermark_ms))
            .collect();
        if !marks.is_empty() {
            meta.push_str(" idle=");
            meta.push_str(&marks.join(","));
        }
        meta
    }

    /// Parses commit metadata written by `metadata`.
    pub fn parse_metadata(meta: &str) -> Option<CommitMeta> {
        let mut parts = meta.split_whitespace();
        if parts.next()? != META_PREFIX {
            return None;
        }
        let mut progress = Progress::default();
        let (mut sig, mut topic_id, mut table, mut was) = (None, None, None, None);
        for part in parts {
            let (k, v) = part.split_once('=')?;
            let opt = |v: &str| -> Option<Option<i64>> {
                if v == "-" {
                    Some(None)
                } else {
                    v.parse().ok().map(Some)
                }
            };
            match k {
                "wm" => progress.watermark_ms = opt(v)?,
                "max" => progress.max_event_ms = opt(v)?,
                "late" => progress.late_total = v.parse().ok()?,
                "sig" => sig = Some(v.to_string()),
                "tid" => topic_id = Some(v.to_string()),
                "tbl" => table = Some(v.to_string()),
                "was" => was = Some(v.to_string()),
                "idle" => {
                    for m in v.split(',') {
                        let (at, wm) = m.split_once('@')?;
                        progress.idle_marks.push(IdleMark {
                            at_offset: at.parse().ok()?,
                            watermark_ms: wm.parse().ok()?,
                        });
                    }
                }
                _ => {}
            }
        }
        Some(CommitMeta {
            progress,
            settings: sig?,
            topic_id,
            campaigns_sha256: table,
            campaigns_replaced: was,
        })
    }
}

/// Rejects not yet landed, and the progress just before the first of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectBuffer {
    pub items: Vec<RejectRecord>,
    pub progress_before_first: Option<Progress>,
}

impl RejectBuffer {
    pub fn push(&mut self, r: RejectRecord, progress_before: Progress) {
        if self.items.is_empty() {
            self.progress_before_first = Some(progress_before);
        }
        self.items.push(r);
    }

    pub fn first(&self) -> Option<(i64, Progress)> {
        match (self.items.first(), &self.progress_before_first) {
            (Some(r), Some(p)) => Some((r.offset, p.clone())),
            _ => None,
        }
    }

    /// See `PartitionWindows::mark_idle`.
    pub fn mark_idle(&mut self, mark: IdleMark) {
        if let Some(p) = &mut self.progress_before_first {
            p.idle_marks.push(mark);
        }
    }

    pub fn unmark_idle(&mut self, mark: IdleMark) {
        if let Some(p) = &mut self.progress_before_first {
            p.idle_marks.retain(|m| *m != mark);
        }
    }

    pub fn take(&mut self) -> Vec<RejectRecord> {
        self.progress_before_first = None;
        std::mem::take(&mut self.items)
    }
}

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
        let opened = std::panic::catch_unwind(move || sled::Config::new().path(p).open());
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
        self.db.flush().map_err(sled_err)?;
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

    fn identity(topic_id: Option<&str>) -> Identity {
        Identity {
            topic: "t".into(),
            topic_id: topic_id.map(str::to_string),
            settings: crate::identity::Settings {
                window: crate::consume::window::WindowConfig {
                    size_ms: 60_000,
                    lateness_ms: 60_000,
                },
                limits: crate::consume::decode::Limits {
                    max_future_skew_ms: 300_000,
                    max_duration_ms: 86_400_000,
                },
            },
            campaigns_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn commit_metadata_round_trips() {
        let cp = CommitPoint {
            offset: 10,
            progress: Progress {
                max_event_ms: Some(1_726_210_201_456),
                watermark_ms: Some(1_726_210_141_456),
                late_total: 3,
                idle_marks: vec![
                    IdleMark {
                        at_offset: 12,
                        watermark_ms: 1_726_210_150_000,
                    },
                    IdleMark {
                        at_offset: 15,
                        watermark_ms: 1_726_210_170_000,
                    },
                ],
            },
        };
        let id = identity(Some("q1L3pG5hQ0yRz4Ww1b2c3A"));
        let meta = cp.metadata(&id, Some(&"cd".repeat(32)));
        assert!(meta.len() < 4096, "{meta}");
        assert_eq!(
            CommitPoint::parse_metadata(&meta),
            Some(CommitMeta {
                progress: cp.progress.clone(),
                settings: id.settings.signature(),
                topic_id: id.topic_id.clone(),
                campaigns_sha256: Some(id.campaigns_sha256.clone()),
                campaigns_replaced: Some("cd".repeat(32)),
            })
        );
        let empty = CommitPoint {
            offset: 0,
            progress: Progress::default(),
        };
        let parsed = CommitPoint::parse_metadata(&empty.metadata(&identity(None), None)).unwrap();
        assert_eq!(parsed.progress, Progress::default());
        assert_eq!(parsed.topic_id, None);
        // A commit of a version before topic IDs and table checksums.
        let old =
            CommitPoint::parse_metadata("landfall/1 wm=- max=- late=0 sig=w60000-l60000-f300000")
                .unwrap();
        assert_eq!((old.topic_id, old.campaigns_sha256), (None, None));
        assert!(CommitPoint::parse_metadata("someone else's").is_none());
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
