//! Sink: closed windows and cut rejects become Parquet files, landed durably under
//! deterministic names. A name that already exists has landed before (a replay after a crash,
//! or another instance) and is never replaced.

mod parquet;
pub mod publish;

pub use self::parquet::{encode_rejects, encode_window, rejects_schema, window_schema, Provenance};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::decode::RejectReason;
use crate::enrich::CampaignTable;
use crate::window::ClosedWindow;

/// A record bound for the rejects dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRecord {
    pub offset: i64,
    #[serde(with = "reason_label")]
    pub reason: RejectReason,
    pub detail: String,
    pub event_ms: Option<i64>,
    pub lateness_ms: Option<i64>,
    pub record_ts_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

mod reason_label {
    use super::RejectReason;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &RejectReason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RejectReason, D::Error> {
        let s = String::deserialize(d)?;
        RejectReason::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason {s}")))
    }
}

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
}

/// What landing did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    Written {
        path: PathBuf,
        bytes: u64,
        rows: u64,
    },
    /// The file was there already: it landed before a crash or in another instance.
    AlreadyThere { path: PathBuf },
}

/// Where files go and what goes in their footers.
#[derive(Debug, Clone)]
pub struct Sink {
    pub report_dir: PathBuf,
    pub rejects_dir: PathBuf,
    pub topic: String,
    pub table: Arc<CampaignTable>,
    /// fsync files and directories. Off only for the benchmark that measures what it costs.
    pub sync: bool,
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
    /// `report/date=2024-09-13/hour=06/<topic>-p0003-20240913T064900Z.parquet`.
    pub fn window_path(&self, partition: i32, start_ms: i64) -> PathBuf {
        self.report_dir
            .join(window_file_name(&self.topic, partition, start_ms))
    }

    /// `rejects/partition=3/<topic>-p0003-upto-00000000000000012345.parquet`.
    pub fn rejects_path(&self, partition: i32, close_offset: i64) -> PathBuf {
        self.rejects_dir
            .join(rejects_file_name(&self.topic, partition, close_offset))
    }

    fn provenance(&self, partition: i32) -> Provenance<'_> {
        Provenance {
            topic: &self.topic,
            partition,
            table: &self.table,
        }
    }

    fn land(
        &self,
        root: &Path,
        path: PathBuf,
        rows: u64,
        encode: impl FnOnce() -> Result<Vec<u8>, ::parquet::errors::ParquetError>,
    ) -> Result<Landed, SinkError> {
        if path.exists() {
            return Ok(Landed::AlreadyThere { path });
        }
        let bytes = encode().map_err(|source| SinkError::Encode {
            path: path.clone(),
            source,
        })?;
        if let Some(dir) = path.parent() {
            publish::ensure_dir(root, dir)?;
        }
        if !publish::publish(&path, &bytes, self.sync)? {
            return Ok(Landed::AlreadyThere { path });
        }
        Ok(Landed::Written {
            path,
            bytes: bytes.len() as u64,
            rows,
        })
    }

    pub fn land_window(&self, partition: i32, w: &ClosedWindow) -> Result<Landed, SinkError> {
        let path = self.window_path(partition, w.start_ms);
        let prov = self.provenance(partition);
        self.land(&self.report_dir, path, w.by_campaign.len() as u64, || {
            encode_window(w, &prov)
        })
    }

    pub fn land_rejects(
        &self,
        partition: i32,
        close_offset: i64,
        rejects: &[RejectRecord],
    ) -> Result<Landed, SinkError> {
        let path = self.rejects_path(partition, close_offset);
        let prov = self.provenance(partition);
        self.land(&self.rejects_dir, path, rejects.len() as u64, || {
            encode_rejects(rejects, close_offset, &prov)
        })
    }
}
