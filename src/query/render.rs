//! How merged windows are printed: a table like Spark's `show()`, CSV with a header, or JSON
//! with the Parquet column names.

use std::fmt::Write as _;

use serde::Serialize;

use super::WindowRow;

/// `2024-09-13T06:49:00Z`.
pub(super) fn rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{us}us"))
}

/// The fields of [`JsonRow`], in order; the table shows the first seven.
const COLUMNS: [&str; 11] = [
    "window_start",
    "window_end",
    "network_id",
    "campaign_id",
    "campaign_name",
    "total_count",
    "avg_duration",
    "sum_duration",
    "min_duration",
    "max_duration",
    "files",
];

/// One merged row in the Parquet files' column names and units (seconds), plus how many
/// partition files it merges. Durations are exact: milliseconds over 1000 print exactly.
#[derive(Debug, Serialize)]
struct JsonRow<'a> {
    window_start: String,
    window_end: String,
    network_id: Option<i64>,
    campaign_id: i64,
    campaign_name: Option<&'a str>,
    total_count: u64,
    avg_duration: f64,
    sum_duration: f64,
    min_duration: f64,
    max_duration: f64,
    files: u32,
}

fn record(w: &WindowRow) -> JsonRow<'_> {
    let r = &w.row;
    let secs = |ms: i64| ms as f64 / 1000.0;
    JsonRow {
        window_start: rfc3339(r.window_start_us),
        window_end: rfc3339(r.window_end_us),
        network_id: r.network_id,
        campaign_id: r.campaign_id,
        campaign_name: r.campaign_name.as_deref(),
        total_count: r.agg.count,
        avg_duration: r.agg.avg_secs(),
        sum_duration: secs(r.agg.sum_ms),
        min_duration: secs(r.agg.min_ms),
        max_duration: secs(r.agg.max_ms),
        files: w.files,
    }
}

/// A JSON array of objects, one per merged row.
pub fn render_json(rows: &[WindowRow]) -> Result<String, serde_json::Error> {
    serde_json::to_string(&rows.iter().map(record).collect::<Vec<_>>())
}

/// CSV with a header line; nulls are empty cells.
pub fn render_csv(rows: &[WindowRow]) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(record(r))?;
    }
    if rows.is_empty() {
        // serde writes the header with the first row; an empty answer still has one.
        w.write_record(COLUMNS)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn ts(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// A table in the style of Spark's `show()`: cells right-aligned, at most `limit` rows (0 for
/// all).
pub fn render_table(rows: &[WindowRow], limit: usize) -> String {
    let header = &COLUMNS[..7];
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
            let _ = write!(s, "{v:>w$}|");
        }
        s.push('\n');
        s
    };
    out.push_str(&row(header));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::window::Agg;
    use crate::readback::WindowFileRow;

    fn row(campaign: i64, network: Option<i64>, agg: Agg) -> WindowRow {
        WindowRow {
            row: WindowFileRow {
                window_start_us: 1_726_210_140_000_000,
                window_end_us: 1_726_210_200_000_000,
                network_id: network,
                campaign_id: campaign,
                campaign_name: network.map(|_| format!("c{campaign}")),
                agg,
            },
            files: 3,
        }
    }

    #[test]
    fn formats_share_the_column_names_and_exact_seconds() {
        let agg = Agg {
            count: 3,
            sum_ms: 123_457,
            min_ms: 1_001,
            max_ms: 99_999,
        };
        let rows = [row(40, Some(2), agg), row(999, None, agg)];
        let json: serde_json::Value = serde_json::from_str(&render_json(&rows).unwrap()).unwrap();
        assert_eq!(json[0]["window_start"], "2024-09-13T06:49:00Z");
        assert_eq!(json[0]["window_end"], "2024-09-13T06:50:00Z");
        assert_eq!(json[0]["sum_duration"].to_string(), "123.457");
        assert_eq!(json[0]["min_duration"].to_string(), "1.001");
        assert_eq!(json[0]["total_count"], 3);
        assert_eq!(json[1]["network_id"], serde_json::Value::Null);
        assert_eq!(json[1]["campaign_name"], serde_json::Value::Null);

        let csv = render_csv(&rows).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "window_start,window_end,network_id,campaign_id,campaign_name,total_count,\
             avg_duration,sum_duration,min_duration,max_duration,files"
        );
        assert!(
            lines[2].starts_with("2024-09-13T06:49:00Z,2024-09-13T06:50:00Z,,999,,3,"),
            "{}",
            lines[2]
        );
        assert_eq!(render_csv(&[]).unwrap().lines().count(), 1);

        let table = render_table(&rows, 1);
        assert!(table.contains("|2024-09-13 06:49:00|"), "{table}");
        assert!(table.contains("only showing top 1 of 2 rows"), "{table}");
    }
}
