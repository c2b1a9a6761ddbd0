//! Reading Landfall's output back for assertions, and an independent reference model of what
//! it should contain, computed from the records a read_committed reader sees.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::ReadRecord;

/// (window start µs, campaign) -> (count, sum ms, min ms, max ms)
pub type Cells = BTreeMap<(i64, i64), (i64, i64, i64, i64)>;

/// Every file under `dir` whose name ends in `.parquet` (what a `**/*.parquet` glob matches),
/// relative to `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".parquet"))
        .collect()
}

/// Every file under `dir`, relative to `dir`, sorted: temporary and other dot-files too.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
        .collect();
    out.sort();
    out
}

fn file_name(rel: &Path) -> String {
    rel.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What readers see of the output trees while the consumer writes them: a `**/*.parquet`
/// glob matches every name ending in `.parquet`, dot-files included (DuckDB's glob does).
/// Every file it matches must have a final name (no leading dot) and be a complete Parquet
/// file. Landed files never change, so each footer is read once, however often a watcher
/// looks.
#[derive(Debug, Default)]
pub struct GlobWatch {
    complete: BTreeSet<PathBuf>,
    /// Every temporary (dot) file seen, which no glob may match.
    pub temps_seen: BTreeSet<PathBuf>,
    pub looks: u64,
}

impl GlobWatch {
    /// Lists every file under `dir` and asserts the above. Returns the temporary files there
    /// now.
    pub fn check(&mut self, dir: &Path) -> usize {
        self.looks += 1;
        let mut temps = 0;
        for rel in all_files(dir) {
            let path = dir.join(&rel);
            let name = file_name(&rel);
            if name.starts_with('.') {
                temps += 1;
                self.temps_seen.insert(path.clone());
            }
            if !name.ends_with(".parquet") || self.complete.contains(&path) {
                continue;
            }
            assert!(
                !name.starts_with('.'),
                "a **/*.parquet glob matches the temporary file {rel:?} in {}",
                dir.display()
            );
            let file = File::open(&path).unwrap_or_else(|e| {
                panic!("{rel:?}, matched by a **/*.parquet glob, cannot be opened: {e}")
            });
            if let Err(e) = ParquetRecordBatchReaderBuilder::try_new(file) {
                panic!(
                    "{rel:?}, matched by a **/*.parquet glob, is not a complete Parquet file: {e}"
                );
            }
            self.complete.insert(path);
        }
        temps
    }
}

/// Whether `rel` is a directory marker: `_landfall.<topic>.json` at the root of an output
/// directory, which records the identity its files were written with (readers skip `_` names).
fn is_directory_marker(rel: &Path) -> bool {
    let name = file_name(rel);
    rel.parent() == Some(Path::new("")) && name.starts_with("_landfall.") && name.ends_with(".json")
}

/// Asserts that nothing but finished Parquet files is left under `dir`: every file has a
/// final name ending in `.parquet` and a readable footer. The one other file allowed is the
/// directory marker at the root, and it must be the JSON Landfall writes.
pub fn assert_only_final_files(dir: &Path) {
    let files = all_files(dir);
    for rel in files.iter().filter(|rel| is_directory_marker(rel)) {
        let bytes = std::fs::read(dir.join(rel)).unwrap();
        let marker: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("the directory marker {rel:?} is not JSON: {e}"));
        assert!(
            marker["topic"].is_string() && marker["settings"].is_string(),
            "the directory marker {rel:?} lacks its topic or settings: {marker}"
        );
    }
    let stray: Vec<&PathBuf> = files
        .iter()
        .filter(|rel| {
            let name = file_name(rel);
            !is_directory_marker(rel) && (name.starts_with('.') || !name.ends_with(".parquet"))
        })
        .collect();
    assert!(
        stray.is_empty(),
        "{} of {} files left under {} are not finished Parquet files; the first: {:?}",
        stray.len(),
        files.len(),
        dir.display(),
        &stray[..stray.len().min(10)]
    );
    GlobWatch::default().check(dir);
}

/// Relative path -> bytes, for byte-for-byte comparisons of two output trees.
pub fn tree_bytes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    parquet_files(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(dir.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

fn footer(path: &Path) -> BTreeMap<String, String> {
    landfall::readback::read_window_file(&landfall::store::Root::Local(path.into()), path)
        .unwrap_or_else(|e| panic!("{e}"))
        .footer
        .0
}

/// Window cells per partition, read from the report directory's files.
pub fn read_windows(dir: &Path) -> BTreeMap<i32, Cells> {
    let mut out: BTreeMap<i32, Cells> = BTreeMap::new();
    for rel in parquet_files(dir) {
        let path = dir.join(&rel);
        let partition: i32 = footer(&path)["landfall.partition"].parse().unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let start = b
                .column_by_name("window_start")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>()
                .clone();
            let campaign = b
                .column_by_name("campaign_id")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let count = b
                .column_by_name("total_count")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let sum = b
                .column_by_name("sum_duration")
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .clone();
            let min = b
                .column_by_name("min_duration")
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .clone();
            let max = b
                .column_by_name("max_duration")
                .unwrap()
                .as_primitive::<Decimal128Type>()
                .clone();
            for i in 0..b.num_rows() {
                let prev = out.entry(partition).or_default().insert(
                    (start.value(i), campaign.value(i)),
                    (
                        count.value(i),
                        sum.value(i) as i64,
                        min.value(i) as i64,
                        max.value(i) as i64,
                    ),
                );
                assert!(
                    prev.is_none(),
                    "two rows for one (window, campaign) in partition {partition}: {rel:?}"
                );
            }
        }
    }
    out
}

/// (partition, offset) -> reason, from the rejects directory. Fails on a duplicate.
pub fn read_rejects(dir: &Path) -> BTreeMap<(i32, i64), String> {
    let mut out = BTreeMap::new();
    let mut seen_in: BTreeMap<(i32, i64), PathBuf> = BTreeMap::new();
    for rel in parquet_files(dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join(&rel)).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let partition = b
                .column_by_name("kafka_partition")
                .unwrap()
                .as_primitive::<arrow_array::types::Int32Type>()
                .clone();
            let offset = b
                .column_by_name("kafka_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let reason = b
                .column_by_name("reason")
                .unwrap()
                .as_string::<i32>()
                .clone();
            for i in 0..b.num_rows() {
                let k = (partition.value(i), offset.value(i));
                let prev = out.insert(k, reason.value(i).to_string());
                assert!(
                    prev.is_none(),
                    "reject {}@{} appears twice: in {:?} and {rel:?} (of {} reject files)",
                    k.0,
                    k.1,
                    seen_in.get(&k),
                    parquet_files(dir).len()
                );
                seen_in.insert(k, rel.clone());
            }
            assert!(!reason.is_nullable() || reason.null_count() == 0);
        }
    }
    out
}

/// What the output must contain, from the committed records alone.
#[derive(Debug, Default)]
pub struct Reference {
    pub windows: BTreeMap<i32, Cells>,
    pub rejects: BTreeMap<(i32, i64), String>,
    pub records: usize,
}

fn parse_ts(s: &str) -> Option<i64> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .ok()
        .or_else(|| {
            chrono::DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.timestamp_millis())
        })
}

/// The reference model, written independently of Landfall's code: per partition in offset
/// order, a record is invalid if it is not a JSON object with the five fields of the right
/// types, if end is before start, or if end is more than `skew_ms` after the record timestamp.
/// A valid record is late if its window ended at or before (greatest earlier event time minus
/// lateness); otherwise it is counted in its window.
pub fn reference(
    records: &[ReadRecord],
    window_ms: i64,
    lateness_ms: i64,
    skew_ms: i64,
) -> Reference {
    let mut r = Reference {
        records: records.len(),
        ..Default::default()
    };
    let mut by_partition: BTreeMap<i32, Vec<&ReadRecord>> = BTreeMap::new();
    for rec in records {
        by_partition.entry(rec.partition).or_default().push(rec);
    }
    for (p, mut recs) in by_partition {
        recs.sort_by_key(|r| r.offset);
        let mut max: Option<i64> = None;
        for rec in recs {
            let v: Option<serde_json::Value> = rec
                .value
                .as_deref()
                .and_then(|b| std::str::from_utf8(b).ok())
                .and_then(|s| serde_json::from_str(s).ok());
            let fields = v.as_ref().and_then(|v| {
                Some((
                    v.get("viewId")?.as_str()?,
                    parse_ts(v.get("startTimestamp")?.as_str()?)?,
                    parse_ts(v.get("endTimestamp")?.as_str()?)?,
                    v.get("bannerId")?.as_i64()?,
                    v.get("campaignId")?.as_i64()?,
                ))
            });
            let Some((_, start, end, _, campaign)) = fields else {
                r.rejects.insert((p, rec.offset), "invalid".into());
                continue;
            };
            if end < start || rec.timestamp_ms.is_some_and(|ts| end > ts + skew_ms) {
                r.rejects.insert((p, rec.offset), "invalid".into());
                continue;
            }
            let w = end.div_euclid(window_ms) * window_ms;
            if max.is_some_and(|m| w + window_ms <= m - lateness_ms) {
                r.rejects.insert((p, rec.offset), "late".into());
                continue;
            }
            max = Some(max.map_or(end, |m| m.max(end)));
            let cell = r
                .windows
                .entry(p)
                .or_default()
                .entry((w * 1000, campaign))
                .or_insert((0, 0, i64::MAX, i64::MIN));
            let d = end - start;
            cell.0 += 1;
            cell.1 += d;
            cell.2 = cell.2.min(d);
            cell.3 = cell.3.max(d);
        }
    }
    r
}

/// Reject reasons collapsed to the reference's two classes.
pub fn reject_classes(rejects: &BTreeMap<(i32, i64), String>) -> BTreeMap<(i32, i64), String> {
    rejects
        .iter()
        .map(|(k, v)| {
            (
                *k,
                if v == "late" {
                    "late".to_string()
                } else {
                    "invalid".to_string()
                },
            )
        })
        .collect()
}

pub fn offsets(m: &BTreeMap<(i32, i64), String>) -> BTreeSet<(i32, i64)> {
    m.keys().copied().collect()
}
