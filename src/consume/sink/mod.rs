//! Sink: closed windows and cut rejects become Parquet files, landed durably under
//! deterministic names. A name that already exists has landed before (a replay after a crash,
//! or another instance) and is never replaced; it is used only once its footer proves it is
//! the file this run would land (see `identity`), and made durable again before anything is
//! committed past it.

mod group;
pub mod marker;
mod parquet;
pub mod publish;

pub use self::group::{encode_threads, Contents, Pending, FSYNC_THREADS, OBJECT_CONCURRENCY};
pub use self::parquet::{encode_rejects, encode_window, rejects_schema, window_schema, Provenance};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::{rel_key, Root, StoreError};

use crate::consume::enrich::CampaignTable;
use crate::identity::{Expected, FileKind, Identity, Mismatch};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fsync of {path} failed: {source}; the data may not be on disk, so Landfall stops without committing (an fsync is never retried)")]
    Fsync {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("syncfs of the file system holding {path} failed (--fsync file-system): {source}; a write on that file system failed, perhaps not one of Landfall's, and the data may not be on disk, so Landfall stops without committing (a sync is never retried)")]
    SyncFs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "directory {path} has disappeared under the running consumer; nothing past the last \
         landed file was committed. Restore it (or start over with a new --group) and restart"
    )]
    RootGone { path: PathBuf },
    #[error("encoding Parquet for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: ::parquet::errors::ParquetError,
    },
    #[error(
        "{path} is already there but is not a readable Parquet file ({detail}). Landfall never \
         leaves a partial file under a final name, so something else wrote it: move it out of \
         the directory and restart"
    )]
    Unreadable { path: PathBuf, detail: String },
    #[error(
        "{0}; nothing past the last landed file was committed, and a restart resumes from there"
    )]
    Store(#[from] StoreError),
    #[error("{path} is already there but is not the file this run would land: {mismatch}. {}", way_out(.mismatch))]
    NotOurs { path: PathBuf, mismatch: Mismatch },
    #[error(
        "the directory of {path} holds this topic's output from another run: the marker says \
         {mismatch}. {}", way_out(.mismatch)
    )]
    MarkerMismatch { path: PathBuf, mismatch: Mismatch },
}

/// What a user can do about a found file that is not this run's output.
fn way_out(m: &Mismatch) -> &'static str {
    match m.what {
        "topic ID" => {
            "The topic was deleted and created again since that file landed, so the directory \
             holds the old topic's output. Land the new topic with a new --group and a new \
             --output-dir and --rejects-dir"
        }
        "window settings" => {
            "It was written with other settings (--window-secs, --allowed-lateness-secs, \
             --max-future-skew-secs, --max-duration-secs): restore them, or use a new --group \
             with a new --output-dir and --rejects-dir"
        }
        "campaign table (SHA-256)" => {
            "It was written with another campaign table: restore that table (the footer's \
             landfall.campaigns_sha256 names it), or pass --accept-campaigns-change to keep the \
             files already landed and apply the new table to windows that land from now on"
        }
        _ => {
            "It was not landed by this group's run over this topic (another writer, another \
             group with other settings sharing the directory, or a copied file): move it out of \
             the directory, or use a new --output-dir and --rejects-dir"
        }
    }
}

/// A file's bytes, or why encoding failed.
type Encoded = Result<Vec<u8>, ::parquet::errors::ParquetError>;

/// What landing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    Written {
        path: PathBuf,
        bytes: u64,
        rows: u64,
    },
    /// The file was there already, landed before a crash or by another instance; its
    /// footer matched and it is durable again. `other_table`: it was landed with a campaign
    /// table this run replaced (`--accept-campaigns-change`).
    AlreadyThere { path: PathBuf, other_table: bool },
}

/// A campaign table change, as one partition sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableChange {
    /// Files found with another table are kept (`--accept-campaigns-change`, or a commit that
    /// records the change).
    pub accepted: bool,
    /// The table this run replaced for the partition, recorded in the footers.
    pub replaced: Option<String>,
}

/// What makes a group of landed files durable on local disk (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncScope {
    /// An fsync of every file, a few at once.
    PerFile,
    /// One syncfs(2) per file system the group's files are on.
    FileSystem,
}

/// Where files go and what goes in their footers.
#[derive(Debug, Clone)]
pub struct Sink {
    pub report: Root,
    pub rejects: Root,
    pub identity: Identity,
    pub table: Arc<CampaignTable>,
    /// fsync files and directories. Off only for the benchmark that measures what it costs.
    pub sync: bool,
    /// How a group's files are made durable when `sync` is on (`--fsync`).
    pub fsync_scope: FsyncScope,
    /// Object stores: look for a file before creating it, for a store that does not enforce
    /// "create only if absent" (`--assume-single-writer`).
    pub look_first: bool,
    /// Files of a group encoded and landed at once: 1 on local disk (where only the fsyncs
    /// overlap, see `group`), more for an object store's PUTs.
    pub concurrency: usize,
}

/// The root can go while files are written (renamed or unmounted under the running consumer):
/// say so, rather than naming a missing file.
fn root_gone_or(root: &Path, e: SinkError) -> SinkError {
    if root.is_dir() {
        e
    } else {
        SinkError::RootGone {
            path: root.to_path_buf(),
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// `20240913T064900Z`, from milliseconds since the epoch.
fn compact_utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        .unwrap_or_else(|| format!("ms{ms}"))
}

/// Where a window file goes, relative to the report directory:
/// `date=2024-09-13/hour=06/<topic>-p0003-20240913T064900Z.parquet`. Directory values use only
/// `[0-9A-Za-z._-]`, and the name depends only on the topic, window and partition.
pub fn window_file_name(topic: &str, partition: i32, start_ms: i64) -> PathBuf {
    let t = chrono::DateTime::from_timestamp_millis(start_ms).unwrap_or_default();
    PathBuf::from(format!("date={}", t.format("%Y-%m-%d")))
        .join(format!("hour={}", t.format("%H")))
        .join(format!(
            "{topic}-p{partition:04}-{}.parquet",
            compact_utc(start_ms)
        ))
}

/// Where a reject file goes, relative to the rejects directory:
/// `partition=3/<topic>-p0003-upto-00000000000000012345.parquet`, named by the offset it was
/// cut at, which a replay reproduces.
pub fn rejects_file_name(topic: &str, partition: i32, close_offset: i64) -> PathBuf {
    PathBuf::from(format!("partition={partition}")).join(format!(
        "{topic}-p{partition:04}-upto-{close_offset:020}.parquet"
    ))
}

impl Sink {
    fn provenance<'a>(&'a self, partition: i32, replaced: Option<&'a str>) -> Provenance<'a> {
        Provenance {
            identity: &self.identity,
            partition,
            table: &self.table,
            campaigns_replaced: replaced,
        }
    }

    /// Lands a pending file as far as it goes alone: on local disk, written to its
    /// temporary file (the group fsyncs and links it, see `group`); in an object store, one
    /// conditional PUT, done. A file already at its name is checked here. `encoded`: its
    /// bytes, which `group` encodes beforehand only for a file it has just found absent on
    /// local disk. `change.accepted` is set when a campaign table change is accepted for the
    /// partition: files of another table are kept.
    fn land_pending(
        &self,
        p: &Pending,
        encoded: Option<Encoded>,
    ) -> Result<group::Step, SinkError> {
        let (root, rel, want) = self.target(p);
        let (rows, table_change_ok) = (p.rows() as u64, p.change.accepted);
        let path = root.join(&rel);
        let absent = encoded.is_some();
        let encoded = |path: &Path| {
            encoded
                .unwrap_or_else(|| self.encode_pending(p))
                .map_err(|source| SinkError::Encode {
                    path: path.to_path_buf(),
                    source,
                })
        };
        let Root::Object(store) = root else {
            // A file that appeared since the caller looked is caught when its link finds the
            // name taken.
            if !absent && path.exists() {
                let found = self.already_there(root, path, &want, table_change_ok)?;
                return Ok(group::Step::Done(found));
            }
            let local = root.local().unwrap_or(Path::new(".")).to_path_buf();
            let bytes = encoded(&path)?;
            let staged = publish::stage(&local, &path, &bytes, crate::ops::failpoint::hit)
                .map_err(|e| root_gone_or(&local, e))?;
            // The hint helps per-file fsyncs; a syncfs writes the group's files back in one
            // batch, which a hint per file would break up (docs/performance.md).
            if self.sync && self.fsync_scope == FsyncScope::PerFile {
                staged.start_writeback();
            }
            return Ok(group::Step::Staged(Box::new(group::StagedFile {
                staged,
                root: root.clone(),
                local,
                rows,
                want,
                table_change_ok,
            })));
        };
        let key = rel_key(&rel);
        if self.look_first && store.exists(&key)? {
            let found = self.already_there(root, path, &want, table_change_ok)?;
            return Ok(group::Step::Done(found));
        }
        let bytes = encoded(&path)?;
        let len = bytes.len() as u64;
        // One conditional PUT: the object appears whole, or the name was taken (by a run that
        // crashed after landing it, or by another instance) and nothing changed.
        if !store.create(&key, bytes.into())? {
            let found = self.already_there(root, path, &want, table_change_ok)?;
            return Ok(group::Step::Done(found));
        }
        crate::ops::failpoint::hit("after-put");
        let landed = Landed::Written {
            path,
            bytes: len,
            rows,
        };
        Ok(group::Step::Done((landed, None)))
    }

    /// Links a staged file (fsynced first, when the sink syncs) to its final name; a name
    /// taken meanwhile (by a zombie, or a second instance) is checked like any found file.
    fn link(&self, f: group::StagedFile) -> Result<group::Outcome, SinkError> {
        let group::StagedFile {
            staged,
            root,
            local,
            rows,
            want,
            table_change_ok,
        } = f;
        let path = staged.final_path().to_path_buf();
        let bytes = staged.bytes();
        let linked = staged
            .link(crate::ops::failpoint::hit)
            .map_err(|e| root_gone_or(&local, e))?;
        if !linked {
            return self.already_there(&root, path, &want, table_change_ok);
        }
        let dir = self.sync.then(|| parent(&path));
        Ok((Landed::Written { path, bytes, rows }, dir))
    }

    /// A file is at the expected name: keep it only if its footer proves it is the file this
    /// run would land, and (on local disk) make it durable again (it may have been linked just
    /// before a crash that came before its directory's fsync) before anything is committed
    /// past it: the file here, its directory with the group's. An object store made it
    /// durable when it accepted it.
    fn already_there(
        &self,
        root: &Root,
        path: PathBuf,
        want: &Expected,
        table_change_ok: bool,
    ) -> Result<group::Outcome, SinkError> {
        let footer = crate::readback::read_footer(root, &path).map_err(|e| match e {
            crate::readback::ReadError::Store(e) => SinkError::Store(e),
            e => SinkError::Unreadable {
                path: path.clone(),
                detail: e.to_string(),
            },
        })?;
        if let Err(mismatch) = self.identity.check(&footer, want, table_change_ok) {
            return Err(SinkError::NotOurs { path, mismatch });
        }
        let other_table =
            footer.get(crate::identity::keys::CAMPAIGNS) != Some(&self.identity.campaigns_sha256);
        if other_table {
            tracing::info!(path = %path.display(), "kept a file landed with the campaign table this run replaced");
        }
        let mut dir = None;
        if self.sync && root.local().is_some() {
            publish::sync_file(&path)?;
            dir = Some(parent(&path));
        }
        Ok((Landed::AlreadyThere { path, other_table }, dir))
    }

    /// Where a pending file lands, and what its footer must say if it is found there.
    fn target(&self, p: &Pending) -> (&Root, PathBuf, Expected) {
        let topic = &self.identity.topic;
        match &p.what {
            Contents::Window(w) => {
                let want = Expected {
                    kind: FileKind::Window {
                        start_ms: w.start_ms,
                        end_ms: w.end_ms,
                    },
                    partition: p.partition,
                    close_offset: w.close_offset,
                    first_offset: w.first_offset,
                };
                let rel = window_file_name(topic, p.partition, w.start_ms);
                (&self.report, rel, want)
            }
            Contents::Rejects {
                close_offset,
                records,
            } => {
                let want = Expected {
                    kind: FileKind::Rejects,
                    partition: p.partition,
                    close_offset: *close_offset,
                    first_offset: records.first().map_or(*close_offset, |r| r.offset),
                };
                let rel = rejects_file_name(topic, p.partition, *close_offset);
                (&self.rejects, rel, want)
            }
        }
    }

    /// A pending file's bytes. `change.replaced` (the table the partition's commit named, if
    /// this run replaced it) goes into the footer.
    fn encode_pending(&self, p: &Pending) -> Encoded {
        let prov = self.provenance(p.partition, p.change.replaced.as_deref());
        match &p.what {
            Contents::Window(w) => encode_window(w, &prov),
            Contents::Rejects {
                close_offset,
                records,
            } => encode_rejects(records, *close_offset, &prov),
        }
    }
}

/// The identity the sink's unit tests land with: topic "t", one-minute windows, `table`.
#[cfg(test)]
pub(crate) fn test_identity(table: &CampaignTable) -> Identity {
    use crate::consume::decode::Limits;
    use crate::consume::window::WindowConfig;
    Identity {
        topic: "t".into(),
        topic_id: Some("tid".into()),
        settings: crate::identity::Settings {
            window: WindowConfig {
                size_ms: 60_000,
                lateness_ms: 0,
            },
            limits: Limits {
                max_future_skew_ms: 1,
                max_duration_ms: 1,
            },
        },
        campaigns_sha256: table.checksum.clone(),
    }
}
