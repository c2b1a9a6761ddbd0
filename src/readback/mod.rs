//! Reading landed files back: window files and reject files, with their provenance footers.
//! Used by `landfall windows` (the query side) and `landfall verify` (the audit).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaData;

use crate::consume::window::Agg;
use crate::store::{Root, StoreError};
use remote::{ObjectFile, Opened};
use strict::StrictFile;

mod pages;
mod remote;
mod strict;

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
    #[error("reading {path}: the Parquet reader failed on it ({detail}); the file is corrupt")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl ReadError {
    /// The file concerned, when the error is about one file (not a missing directory).
    pub fn file(&self) -> Option<&Path> {
        match self {
            ReadError::Missing(_) | ReadError::Store(_) => None,
            ReadError::Io { path, .. }
            | ReadError::Parquet { path, .. }
            | ReadError::Layout { path, .. }
            | ReadError::Corrupt { path, .. } => Some(path),
        }
    }
}

thread_local! {
    /// Set while `guarded` runs a read: a panic then becomes an error, so it is not printed.
    static GUARDED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that stays quiet about the panics `guarded` turns into errors, and
/// passes every other panic to the hook that was there before. The binary installs it at
/// start-up; the fuzz target too, so that only a panic that escapes counts as a crash.
pub fn quiet_handled_panics() {
    let before = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !GUARDED.with(std::cell::Cell::get) {
            before(info);
        }
    }));
}

/// Runs a read of one file, turning a panic inside the Parquet reader into an error that
/// names the file. A malformed file can still find one: the fuzz target found an `unwrap` on
/// `None` in parquet 57.3.2's footer (thrift) decoder. (It also found a 56-byte footer whose
/// list header claimed 1.6 billion entries, for which parquet 57 reserved 76 GB and aborted
/// the process, which no guard can catch: parquet 60 bounds such a list by the bytes left,
/// apache/arrow-rs#10920, and is what Landfall builds with.)
fn guarded<T>(path: &Path, read: impl FnOnce() -> Result<T, ReadError>) -> Result<T, ReadError> {
    let was = GUARDED.with(|g| g.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    GUARDED.with(|g| g.set(was));
    match result {
        Ok(r) => r,
        Err(panic) => Err(ReadError::Corrupt {
            path: path.to_path_buf(),
            detail: crate::error::panic_message(&*panic),
        }),
    }
}

/// Opens a file under `root` (named as [`Root::join`] names it) for the Parquet reader, with
/// reads past its end refused (see [`strict`]).
fn open(root: &Root, path: &Path) -> Result<Opened, ReadError> {
    match root {
        Root::Local(_) => File::open(path)
            .and_then(StrictFile::new)
            .map(Opened::File)
            .map_err(|source| ReadError::Io {
                path: path.to_path_buf(),
                source,
            }),
        Root::Object(o) => {
            let rel = root.relative(path).ok_or_else(|| ReadError::Layout {
                path: path.to_path_buf(),
                problem: format!("not a file under {root}"),
            })?;
            Ok(Opened::Object(ObjectFile::open(o, &rel)?))
        }
    }
}

/// Reads only a file's footer (its key-value metadata), nothing of its data.
pub fn read_footer(root: &Root, path: &Path) -> Result<Footer, ReadError> {
    guarded(path, || {
        let file = open(root, path)?;
        let md = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|source| ReadError::Parquet {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Footer::of(&md))
    })
}

/// Every finalized file under `root`: `*.parquet`, never temporary files (which start with a
/// dot). Sorted.
pub fn parquet_files(root: &Root) -> Result<Vec<PathBuf>, ReadError> {
    parquet_files_pruned(root, |_| true)
}

/// A finalized file's name: `*.parquet`, not starting with a dot.
fn finalized(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('.')
}

/// As [`parquet_files`], but descends only into the subdirectories `enter` accepts, so a query
/// never lists the directories outside its time range.
pub fn parquet_files_pruned(
    root: &Root,
    mut enter: impl FnMut(&Path) -> bool,
) -> Result<Vec<PathBuf>, ReadError> {
    let dir = match root {
        Root::Local(dir) => dir,
        Root::Object(o) => {
            let listed = o.list(|rel| enter(&root.join(Path::new(rel))))?;
            return Ok(listed
                .into_iter()
                .filter(|(rel, _)| finalized(rel.rsplit('/').next().unwrap_or(rel)))
                .map(|(rel, _)| root.join(Path::new(&rel)))
                .collect());
        }
    };
    if !dir.is_dir() {
        return Err(ReadError::Missing(dir.to_path_buf()));
    }
    let mut out = Vec::new();
    // The root is always entered; below it, `enter` prunes directories.
    let walk = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_type().is_dir() || enter(e.path()));
    for entry in walk {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            ReadError::Io {
                path,
                source: e.into(),
            }
        })?;
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_dir() && finalized(&name) {
            out.push(entry.into_path());
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

/// A landed file as read back: its path, footer and rows.
#[derive(Debug, Clone)]
pub struct ReadBack<R> {
    pub path: PathBuf,
    pub footer: Footer,
    pub rows: Vec<R>,
}

/// Reads a file's footer, then decodes only the row groups `choose` picks from it (all of them
/// with `None`). Picking none reads nothing past the footer.
fn read_batches(
    root: &Root,
    path: &Path,
    choose: impl FnOnce(&Footer, &ParquetMetaData) -> Option<Vec<usize>>,
) -> Result<(Footer, Vec<RecordBatch>), ReadError> {
    let file = Arc::new(open(root, path)?);
    let perr = |source| ReadError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new(pages::Shared(file.clone())).map_err(perr)?;
    let footer = Footer::of(builder.metadata());
    let groups = choose(&footer, builder.metadata());
    if groups.as_ref().is_some_and(Vec::is_empty) {
        return Ok((footer, Vec::new()));
    }
    pages::check_dictionaries(&*file, builder.metadata(), groups.as_deref()).map_err(perr)?;
    if let Some(groups) = groups {
        builder = builder.with_row_groups(groups);
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

/// A column as the type Landfall writes it, or a layout error naming both types (a file
/// written by another tool may have the right names with other types).
fn typed<'b, T: 'b>(
    path: &Path,
    batch: &'b RecordBatch,
    name: &str,
    want: &str,
    cast: impl FnOnce(&'b arrow_array::ArrayRef) -> Option<T>,
) -> Result<T, ReadError> {
    let col = column(path, batch, name)?;
    cast(col).ok_or_else(|| ReadError::Layout {
        path: path.to_path_buf(),
        problem: format!("column {name} is {}, not {want}", col.data_type()),
    })
}

/// Reads one window file.
pub fn read_window_file(root: &Root, path: &Path) -> Result<ReadBack<WindowFileRow>, ReadError> {
    read_window_file_where(root, path, |_, _| None)
}

/// Reads one window file, decoding only the row groups `choose` picks from the footer (its
/// key-value entries and each row group's statistics); `None` picks all of them.
pub fn read_window_file_where(
    root: &Root,
    path: &Path,
    choose: impl FnOnce(&Footer, &ParquetMetaData) -> Option<Vec<usize>>,
) -> Result<ReadBack<WindowFileRow>, ReadError> {
    guarded(path, || {
        let (footer, batches) = read_batches(root, path, choose)?;
        let mut rows = Vec::new();
        for b in &batches {
            window_rows(path, b, &mut rows)?;
        }
        Ok(ReadBack {
            path: path.to_path_buf(),
            footer,
            rows,
        })
    })
}

fn window_rows(
    path: &Path,
    b: &RecordBatch,
    rows: &mut Vec<WindowFileRow>,
) -> Result<(), ReadError> {
    let ts = "timestamp(µs)";
    let start = typed(path, b, "window_start", ts, |c| {
        c.as_primitive_opt::<TimestampMicrosecondType>()
    })?;
    let end = typed(path, b, "window_end", ts, |c| {
        c.as_primitive_opt::<TimestampMicrosecondType>()
    })?;
    let network = typed(path, b, "network_id", "int64", |c| {
        c.as_primitive_opt::<Int64Type>()
    })?;
    let campaign = typed(path, b, "campaign_id", "int64", |c| {
        c.as_primitive_opt::<Int64Type>()
    })?;
    let name = typed(path, b, "campaign_name", "utf8", |c| {
        c.as_string_opt::<i32>()
    })?;
    let count = typed(path, b, "total_count", "int64", |c| {
        c.as_primitive_opt::<Int64Type>()
    })?;
    let dec = "decimal(18,3)";
    let sum = typed(path, b, "sum_duration", dec, |c| {
        c.as_primitive_opt::<Decimal128Type>()
    })?;
    let min = typed(path, b, "min_duration", dec, |c| {
        c.as_primitive_opt::<Decimal128Type>()
    })?;
    let max = typed(path, b, "max_duration", dec, |c| {
        c.as_primitive_opt::<Decimal128Type>()
    })?;
    if sum.scale() != 3 || min.scale() != 3 || max.scale() != 3 {
        return Err(ReadError::Layout {
            path: path.to_path_buf(),
            problem: format!("durations have scale {}, not 3 (milliseconds)", sum.scale()),
        });
    }
    // A decimal(18,3) holds less than 10^18; anything wider would not fit the aggregate.
    let ms = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
    for i in 0..b.num_rows() {
        rows.push(WindowFileRow {
            window_start_us: start.value(i),
            window_end_us: end.value(i),
            network_id: (!network.is_null(i)).then(|| network.value(i)),
            campaign_id: campaign.value(i),
            campaign_name: (!name.is_null(i)).then(|| name.value(i).to_string()),
            agg: Agg {
                count: count.value(i).max(0) as u64,
                sum_ms: ms(sum.value(i)),
                min_ms: ms(min.value(i)),
                max_ms: ms(max.value(i)),
            },
        });
    }
    Ok(())
}

/// Reads one reject file.
pub fn read_reject_file(root: &Root, path: &Path) -> Result<ReadBack<RejectRow>, ReadError> {
    guarded(path, || {
        let (footer, batches) = read_batches(root, path, |_, _| None)?;
        let mut rows = Vec::new();
        for b in &batches {
            reject_rows(path, b, &mut rows)?;
        }
        Ok(ReadBack {
            path: path.to_path_buf(),
            footer,
            rows,
        })
    })
}

fn reject_rows(path: &Path, b: &RecordBatch, rows: &mut Vec<RejectRow>) -> Result<(), ReadError> {
    let topic = typed(path, b, "kafka_topic", "utf8", |c| c.as_string_opt::<i32>())?;
    let partition = typed(path, b, "kafka_partition", "int32", |c| {
        c.as_primitive_opt::<Int32Type>()
    })?;
    let offset = typed(path, b, "kafka_offset", "int64", |c| {
        c.as_primitive_opt::<Int64Type>()
    })?;
    let reason = typed(path, b, "reason", "utf8", |c| c.as_string_opt::<i32>())?;
    let key = typed(path, b, "key", "binary", |c| c.as_binary_opt::<i32>())?;
    let value = typed(path, b, "value", "binary", |c| c.as_binary_opt::<i32>())?;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the fuzz target found (fuzz/regressions/footer): each is an error naming the
    /// file, never a panic that escapes, an abort or a hang.
    #[test]
    fn fuzzed_footers_are_errors_not_panics() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/footer");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            seen += 1;
            // Each is damaged somewhere (the footer, or a page behind a sound footer): every
            // read returns, and whatever fails names the file.
            let root = Root::Local(dir.clone());
            let errors: Vec<ReadError> = [
                read_footer(&root, &path).err(),
                read_window_file(&root, &path).err(),
                read_reject_file(&root, &path).err(),
            ]
            .into_iter()
            .flatten()
            .collect();
            assert!(!errors.is_empty(), "{} reads as valid", path.display());
            for e in errors {
                assert_eq!(e.file(), Some(path.as_path()), "{e}");
            }
        }
        assert!(seen > 0, "no regression inputs in {}", dir.display());
    }
}
