//! Reading the finalized windows back: every landed window file, merged across partitions into
//! one row per (window, campaign). Counts and sums add up, min and max combine, and the
//! average is recomputed from sum over count, never averaged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::readback::{parquet_files, read_window_file, ReadError, WindowFileRow};
use crate::window::Agg;

/// One merged row: a window file row whose aggregate covers every partition.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub row: WindowFileRow,
    /// How many partition files contributed.
    pub files: u32,
}

/// Reads and merges every window file under `dir`.
pub fn read_merged(dir: &Path) -> Result<Vec<WindowRow>, ReadError> {
    let mut merged: BTreeMap<(i64, i64), WindowRow> = BTreeMap::new();
    for path in parquet_files(dir)? {
        for r in read_window_file(&path)?.rows {
            let m = merged
                .entry((r.window_start_us, r.campaign_id))
                .or_insert_with(|| WindowRow {
                    row: WindowFileRow {
                        agg: Agg::empty(),
                        ..r.clone()
                    },
                    files: 0,
                });
            m.row.agg.merge(&r.agg);
            m.files += 1;
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
        .map(|WindowRow { row: r, .. }| {
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
