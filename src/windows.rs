//! Reading the finalized windows back: every landed window file, merged across partitions into
//! one row per (window, campaign). Counts and sums add up, min and max combine, and the
//! average is recomputed from sum over count, never averaged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Decimal128Type, Int64Type, TimestampMicrosecondType};
use arrow_array::Array;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::window::Agg;

#[derive(Debug, thiserror::Error)]
pub enum WindowsError {
    #[error(
        "report directory {0} does not exist; run `landfall consume` first, or pass --output-dir"
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
    #[error("{path}: unexpected column layout: {problem}")]
    Layout { path: PathBuf, problem: String },
}

/// One merged row.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub window_start_us: i64,
    pub window_end_us: i64,
    pub network_id: Option<i64>,
    pub campaign_id: i64,
    pub campaign_name: Option<String>,
    pub agg: Agg,
    /// How many partition files contributed.
    pub files: u32,
}

/// Every finalized window file under `dir`: `*.parquet`, never temporary files.
pub fn window_files(dir: &Path) -> Result<Vec<PathBuf>, WindowsError> {
    if !dir.is_dir() {
        return Err(WindowsError::Missing(dir.to_path_buf()));
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| WindowsError::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| WindowsError::Io {
                path: d.clone(),
                source,
            })?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") && !name.starts_with('.') {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and merges every window file under `dir`.
pub fn read_merged(dir: &Path) -> Result<Vec<WindowRow>, WindowsError> {
    let mut merged: BTreeMap<(i64, i64), WindowRow> = BTreeMap::new();
    for path in window_files(dir)? {
        let file = File::open(&path).map_err(|source| WindowsError::Io {
            path: path.clone(),
            source,
        })?;
        let perr = |source| WindowsError::Parquet {
            path: path.clone(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(perr)?
            .build()
            .map_err(perr)?;
        for batch in reader {
            let batch = batch.map_err(|e| perr(e.into()))?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| WindowsError::Layout {
                        path: path.clone(),
                        problem: format!("no column {name}"),
                    })
            };
            let start = col("window_start")?.as_primitive::<TimestampMicrosecondType>();
            let end = col("window_end")?.as_primitive::<TimestampMicrosecondType>();
            let network = col("network_id")?.as_primitive::<Int64Type>();
            let campaign = col("campaign_id")?.as_primitive::<Int64Type>();
            let name = col("campaign_name")?.as_string::<i32>();
            let count = col("total_count")?.as_primitive::<Int64Type>();
            let sum = col("sum_duration")?.as_primitive::<Decimal128Type>();
            let min = col("min_duration")?.as_primitive::<Decimal128Type>();
            let max = col("max_duration")?.as_primitive::<Decimal128Type>();
            for i in 0..batch.num_rows() {
                let agg = Agg {
                    count: count.value(i) as u64,
                    sum_ms: sum.value(i) as i64,
                    min_ms: min.value(i) as i64,
                    max_ms: max.value(i) as i64,
                };
                let row = merged
                    .entry((start.value(i), campaign.value(i)))
                    .or_insert_with(|| WindowRow {
                        window_start_us: start.value(i),
                        window_end_us: end.value(i),
                        network_id: (!network.is_null(i)).then(|| network.value(i)),
                        campaign_id: campaign.value(i),
                        campaign_name: (!name.is_null(i)).then(|| name.value(i).to_string()),
                        agg: Agg::empty(),
                        files: 0,
                    });
                row.agg.merge(&agg);
                row.files += 1;
            }
        }
    }
    Ok(merged.into_values().collect())
}

fn ts(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A table in the style of Spark's `show()`.
pub fn render_table(rows: &[WindowRow], limit: usize) -> String {
    let header = [
        "window_start",
        "window_end",
        "network_id",
        "campaign_id",
        "campaign_name",
        "total_count",
        "avg_duration",
    ];
    let shown = if limit == 0 {
        rows.len()
    } else {
        rows.len().min(limit)
    };
    let cells: Vec<[String; 7]> = rows[..shown]
        .iter()
        .map(|r| {
            [
                ts(r.window_start_us),
                ts(r.window_end_us),
                r.network_id.map_or("null".into(), |n| n.to_string()),
                r.campaign_id.to_string(),
                r.campaign_name.clone().unwrap_or_else(|| "null".into()),
                r.agg.count.to_string(),
                format!("{:.3}", r.agg.avg_secs()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..7)
        .map(|i| {
            cells
                .iter()
                .map(|c| c[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = || {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(*w));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line();
    let row = |vals: &[&str]| {
        let mut s = String::from("|");
        for (v, w) in vals.iter().zip(&widths) {
            let _ = write!(s, "{v:<w$}|");
        }
        s.push('\n');
        s
    };
    out.push_str(&row(&header));
    out.push_str(&line());
    for c in &cells {
        out.push_str(&row(&c.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out.push_str(&line());
    if shown < rows.len() {
        let _ = writeln!(out, "only showing top {shown} of {} rows", rows.len());
    }
    out
}
