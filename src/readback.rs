//! Reading landed files back: window files and reject files, with their provenance footers.
//! Used by `landfall windows` (the query side) and `landfall verify` (the audit).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;

use crate::window::Agg;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "directory {0} does not exist; run `landfall consume` first, or pass the right directory"
    )]
    Missing(PathBuf),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: unexpected layout: {problem}")]
    Layout { path: PathBuf, problem: String },
}

/// Every finalized file under `dir`: `*.parquet`, never temporary files (which start with a
/// dot). Sorted.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    parquet_files_pruned(dir, |_| true)
}

/// As [`parquet_files`], but descends only into the subdirectories `enter` accepts, so a query
/// never lists the directories outside its time range.
pub fn parquet_files_pruned(
    dir: &Path,
    mut enter: impl FnMut(&Path) -> bool,
) -> Result<Vec<PathBuf>, ReadError> {
    if !dir.is_dir() {
        return Err(ReadError::Missing(dir.to_path_buf()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReadError::Io { path, source }
    };
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().map_err(io(&path))?.is_dir() {
                if enter(&path) {
                    stack.push(path);
                }
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A file's `landfall.*` footer entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footer(pub BTreeMap<String, String>);

impl Footer {
    /// The key-value entries of a file's footer.
    pub fn of(metadata: &ParquetMetaData) -> Self {
        Footer(
            metadata
                .file_metadata()
                .key_value_metadata()
                .map(|kv| {
                    kv.iter()
                        .map(|k| (k.key.clone(), k.value.clone().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(&format!("landfall.{key}")).map(String::as_str)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }
}

/// One row of a window file.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowFileRow {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub network_id: Option<i64>,
    pub campaign_id: i64,
    pub campaign_name: Option<String>,
    pub agg: Agg,
}

/// One row of a reject file (the columns `verify` needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectRow {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A landed file: its path, footer and rows.
#[derive(Debug, Clone)]
pub struct Landed<R> {
    pub path: PathBuf,
    pub footer: Footer,
    pub rows: Vec<R>,
}

/// Reads a file's footer, then decodes only the row groups `choose` picks from it (all of them
/// with `None`). Picking none reads nothing past the footer.
fn read_batches(
    path: &Path,
    choose: impl FnOnce(&Footer, &ParquetMetaData) -> Option<Vec<usize>>,
) -> Result<(Footer, Vec<RecordBatch>), ReadError> {
    let file = File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let perr = |source| ReadError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(perr)?;
    let footer = Footer::of(builder.metadata());
    match choose(&footer, builder.metadata()) {
        Some(groups) if groups.is_empty() => return Ok((footer, Vec::new())),
        Some(groups) => builder = builder.with_row_groups(groups),
        None => {}
    }
    let batches = builder
        .build()
        .map_err(perr)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| perr(e.into()))?;
    Ok((footer, batches))
}

fn column<'b>(
    path: &Path,
    batch: &'b RecordBatch,
    name: &str,
) -> Result<&'b arrow_array::ArrayRef, ReadError> {
    batch.column_by_name(name).ok_or_else(|| ReadError::Layout {
        path: path.to_path_buf(),
        problem: format!("no column {name}"),
    })
}

/// Reads one window file.
pub fn read_window_file(path: &Path) -> Result<Landed<WindowFileRow>, ReadError> {
    read_window_file_where(path, |_, _| None)
}

/// Reads one window file, decoding only the row groups `choose` picks from the footer (its
/// key-value entries and each row group's statistics); `None` picks all of them.
pub fn read_window_file_where(
    path: &Path,
    choose: impl FnOnce(&Footer, &ParquetMetaData) -> Option<Vec<usize>>,
) -> Result<Landed<WindowFileRow>, ReadError> {
    let (footer, batches) = read_batches(path, choose)?;
    let mut rows = Vec::new();
    for b in &batches {
        let col = |name| column(path, b, name);
        let start = col("window_start")?.as_primitive::<TimestampMicrosecondType>();
        let end = col("window_end")?.as_primitive::<TimestampMicrosecondType>();
        let network = col("network_id")?.as_primitive::<Int64Type>();
        let campaign = col("campaign_id")?.as_primitive::<Int64Type>();
        let name = col("campaign_name")?.as_string::<i32>();
        let count = col("total_count")?.as_primitive::<Int64Type>();
        let sum = col("sum_duration")?.as_primitive::<Decimal128Type>();
        let min = col("min_duration")?.as_primitive::<Decimal128Type>();
        let max = col("max_duration")?.as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            rows.push(WindowFileRow {
                window_start_us: start.value(i),
                window_end_us: end.value(i),
                network_id: (!network.is_null(i)).then(|| network.value(i)),
                campaign_id: campaign.value(i),
                campaign_name: (!name.is_null(i)).then(|| name.value(i).to_string()),
                agg: Agg {
                    count: count.value(i) as u64,
                    sum_ms: sum.value(i) as i64,
                    min_ms: min.value(i) as i64,
                    max_ms: max.value(i) as i64,
                },
            });
        }
    }
    Ok(Landed {
        path: path.to_path_buf(),
        footer,
        rows,
    })
}

/// Reads one reject file.
pub fn read_reject_file(path: &Path) -> Result<Landed<RejectRow>, ReadError> {
    let (footer, batches) = read_batches(path, |_, _| None)?;
    let mut rows = Vec::new();
    for b in &batches {
        let col = |name| column(path, b, name);
        let topic = col("kafka_topic")?.as_string::<i32>();
        let partition = col("kafka_partition")?.as_primitive::<Int32Type>();
        let offset = col("kafka_offset")?.as_primitive::<Int64Type>();
        let reason = col("reason")?.as_string::<i32>();
        let key = col("key")?.as_binary::<i32>();
        let value = col("value")?.as_binary::<i32>();
        for i in 0..b.num_rows() {
            rows.push(RejectRow {
                topic: topic.value(i).to_string(),
                partition: partition.value(i),
                offset: offset.value(i),
                reason: reason.value(i).to_string(),
                key: (!key.is_null(i)).then(|| key.value(i).to_vec()),
                value: (!value.is_null(i)).then(|| value.value(i).to_vec()),
            });
        }
    }
    Ok(Landed {
        path: path.to_path_buf(),
        footer,
        rows,
    })
}
