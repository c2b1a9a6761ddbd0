//! The query side: finalized window files read back, pruned by time range, and merged across
//! partitions into one row per (window, campaign). Counts and sums add up, min and max combine,
//! and the average is recomputed from sum over count, never averaged.

mod chart;
pub mod http;
pub mod page;
mod render;

pub use render::{render_csv, render_json, render_table};

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use parquet::file::metadata::{ParquetMetaData, RowGroupMetaData};
use parquet::file::statistics::Statistics;
use serde::Serialize;

use crate::consume::window::Agg;
use crate::readback::{parquet_files_pruned, read_window_file_where, ReadError, WindowFileRow};
use crate::store::Root;

/// One merged row: a window file row whose aggregate covers every partition.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRow {
    pub row: WindowFileRow,
    /// How many partition files contributed.
    pub files: u32,
}

/// Which windows to answer with. Times are µs since the epoch; a window is in range when its
/// start is in `[from, to)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Query {
    pub from_us: Option<i64>,
    pub to_us: Option<i64>,
    pub network: Option<i64>,
    pub campaign: Option<i64>,
}

/// A filter value that could not be used: which filter (`from`, `to`, `network`, `campaign`),
/// the value as given, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFilter {
    pub name: String,
    pub value: String,
    pub why: String,
}

const TIME_FORMS: &str = "expected RFC 3339 (2024-09-13T06:49:00Z), YYYY-MM-DD[ HH:MM[:SS]] in \
                          UTC, now, or a time before now such as -90s, -15m, -1h30m, -2d or -1w";

/// Parses a time filter into µs since the epoch: RFC 3339; `YYYY-MM-DD`, `YYYY-MM-DD HH:MM` or
/// `YYYY-MM-DD HH:MM:SS` (a `T` works too) in UTC; `now`; or an amount before `now_us`, such as
/// `-90s`, `-15m`, `-1h` or `-2d`.
pub fn parse_time(value: &str, now_us: i64) -> Result<i64, String> {
    let v = value.trim();
    if v == "now" {
        return Ok(now_us);
    }
    if let Some(ago) = v.strip_prefix('-') {
        // humantime reads "90s", "15m", "1h30m", "2d", "1w"; it takes no sign, so "--1h" (an
        // hour in the future by subtraction) is an error, not a surprise.
        let d = humantime::parse_duration(ago).map_err(|e| format!("{e}; {TIME_FORMS}"))?;
        return i64::try_from(d.as_micros())
            .ok()
            .and_then(|us| now_us.checked_sub(us))
            .ok_or_else(|| "out of range".to_string());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp_micros());
    }
    for form in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        for f in [form.to_string(), form.replacen(' ', "T", 1)] {
            if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, &f) {
                return Ok(t.and_utc().timestamp_micros());
            }
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp_micros());
    }
    Err(TIME_FORMS.into())
}

impl Query {
    /// Validates the filters as typed; an empty value means no filter. Every problem is
    /// reported, each naming its filter.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        network: Option<&str>,
        campaign: Option<&str>,
        now_us: i64,
    ) -> Result<Query, Vec<BadFilter>> {
        let mut bad = Vec::new();
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let mut check =
            |name: &str, value: Option<&str>, parse: &dyn Fn(&str) -> Result<i64, String>| {
                let value = given(value)?;
                parse(value)
                    .map_err(|why| {
                        bad.push(BadFilter {
                            name: name.to_string(),
                            value: value.to_string(),
                            why,
                        })
                    })
                    .ok()
            };
        let time = |v: &str| parse_time(v, now_us);
        let id = |v: &str| {
            v.parse::<i64>()
                .map_err(|_| "expected a whole number".to_string())
        };
        let q = Query {
            from_us: check("from", from, &time),
            to_us: check("to", to, &time),
            network: check("network", network, &id),
            campaign: check("campaign", campaign, &id),
        };
        if let (Some(f), Some(t)) = (q.from_us, q.to_us) {
            if t <= f {
                bad.push(BadFilter {
                    name: "to".into(),
                    value: given(to).unwrap_or_default().to_string(),
                    why: format!(
                        "must be later than from ({}): windows are chosen by start, in [from, to)",
                        render::rfc3339(f)
                    ),
                });
            }
        }
        if bad.is_empty() {
            Ok(q)
        } else {
            Err(bad)
        }
    }

    /// Whether windows starting in `[lo, hi)` can be in range.
    fn overlaps(&self, lo: i64, hi: i64) -> bool {
        self.from_us.is_none_or(|f| hi > f) && self.to_us.is_none_or(|t| lo < t)
    }

    fn matches(&self, r: &WindowFileRow) -> bool {
        self.overlaps(r.window_start_us, r.window_start_us + 1)
            && self.network.is_none_or(|n| r.network_id == Some(n))
            && self.campaign.is_none_or(|c| r.campaign_id == c)
    }

    /// Whether a row group may hold a matching row, from its statistics alone. Missing
    /// statistics never exclude anything.
    fn may_match(&self, rg: &RowGroupMetaData) -> bool {
        let within = |column, want: Option<i64>| match (want, int64_range(rg, column)) {
            (Some(v), Some((min, max))) => (min..=max).contains(&v),
            _ => true,
        };
        let time = match int64_range(rg, "window_start") {
            Some((min, max)) => self.overlaps(min, max + 1),
            None => true,
        };
        time && within("network_id", self.network) && within("campaign_id", self.campaign)
    }
}

/// A column chunk's min and max, when the writer recorded them (INT64 columns; timestamps too).
fn int64_range(rg: &RowGroupMetaData, column: &str) -> Option<(i64, i64)> {
    let chunk = rg
        .columns()
        .iter()
        .find(|c| c.column_descr().name() == column)?;
    match chunk.statistics()? {
        Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// The window starts a Hive directory can hold, from its name: `date=YYYY-MM-DD` a day, and
/// `hour=HH` under it an hour (see `sink::window_file_name`). `None` for any other name.
fn dir_span_us(dir: &Path) -> Option<(i64, i64)> {
    let value = |p: &Path, key: &str| -> Option<String> {
        let name = p.file_name()?.to_str()?;
        name.strip_prefix(key)?
            .strip_prefix('=')
            .map(str::to_string)
    };
    let day = |p: &Path| -> Option<i64> {
        let d = chrono::NaiveDate::parse_from_str(&value(p, "date")?, "%Y-%m-%d").ok()?;
        Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
    };
    const HOUR_US: i64 = 3_600_000_000;
    if let Some(start) = day(dir) {
        return Some((start, start + 24 * HOUR_US));
    }
    let hour: i64 = value(dir, "hour")?.parse().ok()?;
    let start = day(dir.parent()?)? + hour * HOUR_US;
    Some((start, start + HOUR_US))
}

/// What a query read and what it skipped: the measure of pruning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ScanStats {
    /// Directories listed, and directories skipped by name (outside the time range).
    pub dirs_scanned: u64,
    pub dirs_skipped: u64,
    /// Finalized files in the scanned directories; each has its footer read.
    pub files_listed: u64,
    /// Files skipped on their footer: statistics out of range, or not a Landfall window
    /// file (another tool's, or a reject file).
    pub files_skipped: u64,
    /// Files that could not be read (truncated, corrupt, or of another layout): skipped, each
    /// with a warning naming it.
    pub files_unreadable: u64,
    /// Files with at least one row group decoded.
    pub files_read: u64,
    pub row_groups_read: u64,
    pub rows_read: u64,
    pub rows_matched: u64,
}

impl fmt::Display for ScanStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scan: dirs_scanned={} dirs_skipped={} files_listed={} files_skipped={} \
             files_unreadable={} files_read={} row_groups_read={} rows_read={} rows_matched={}",
            self.dirs_scanned,
            self.dirs_skipped,
            self.files_listed,
            self.files_skipped,
            self.files_unreadable,
            self.files_read,
            self.row_groups_read,
            self.rows_read,
            self.rows_matched
        )
    }
}

/// A query's merged rows, ordered by window start then campaign, and what it took.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub rows: Vec<WindowRow>,
    pub scan: ScanStats,
}

/// Answers `q` from the finalized window files under `dir`. Directories outside the time range
/// are never listed; a file whose footer statistics rule it out is never decoded; a file whose
/// footer does not say it is a Landfall window file (a reject file, another tool's file) is
/// left out; a file that cannot be read is left out with a warning that names it.
pub fn query(root: &Root, q: &Query) -> Result<Answer, ReadError> {
    let mut scan = ScanStats {
        dirs_scanned: 1,
        ..Default::default()
    };
    let files = parquet_files_pruned(root, |d| match dir_span_us(d) {
        Some((lo, hi)) if !q.overlaps(lo, hi) => {
            scan.dirs_skipped += 1;
            false
        }
        _ => {
            scan.dirs_scanned += 1;
            true
        }
    })?;
    let mut merged: BTreeMap<(i64, i64), WindowRow> = BTreeMap::new();
    for path in files {
        scan.files_listed += 1;
        let mut groups = 0;
        let choose = |footer: &crate::readback::Footer, md: &ParquetMetaData| {
            let picked: Vec<usize> = if footer.get("kind") != Some("window") {
                Vec::new()
            } else {
                (0..md.num_row_groups())
                    .filter(|&i| q.may_match(md.row_group(i)))
                    .collect()
            };
            groups = picked.len() as u64;
            Some(picked)
        };
        let landed = match read_window_file_where(root, &path, choose) {
            Ok(landed) => landed,
            // One bad file does not hide every other answer: it is named and left out.
            Err(e) if e.file().is_some() => {
                scan.files_unreadable += 1;
                tracing::warn!(error = %e, "skipping a file that cannot be read as a window file");
                continue;
            }
            Err(e) => return Err(e),
        };
        if groups == 0 {
            scan.files_skipped += 1;
            continue;
        }
        scan.files_read += 1;
        scan.row_groups_read += groups;
        scan.rows_read += landed.rows.len() as u64;
        for r in landed.rows.into_iter().filter(|r| q.matches(r)) {
            scan.rows_matched += 1;
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
    Ok(Answer {
        rows: merged.into_values().collect(),
        scan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_726_210_140_000_000; // 2024-09-13T06:49:00Z

    #[test]
    fn times_in_every_accepted_form() {
        for v in [
            "2024-09-13T06:49:00Z",
            "2024-09-13T08:49:00+02:00",
            "2024-09-13 06:49",
            "2024-09-13 06:49:00",
            "2024-09-13T06:49",
            "now",
            "-0s",
        ] {
            assert_eq!(parse_time(v, NOW), Ok(NOW), "{v}");
        }
        assert_eq!(parse_time("-1h", NOW), Ok(NOW - 3_600_000_000));
        assert_eq!(parse_time("-15m", NOW), Ok(NOW - 900_000_000));
        assert_eq!(parse_time("-2d", NOW), Ok(NOW - 172_800_000_000));
        assert_eq!(
            parse_time("2024-09-13", NOW),
            Ok(NOW - (6 * 60 + 49) * 60_000_000)
        );
        assert_eq!(parse_time("-1h30m", NOW), Ok(NOW - 5_400_000_000));
        assert_eq!(parse_time("-1w", NOW), Ok(NOW - 604_800_000_000));
        for bad in [
            "yesterday",
            "--1h",
            "-+1h",
            "-h",
            "-1x",
            "2024-13-01",
            "06:49",
            "",
        ] {
            assert!(parse_time(bad, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bad_filter_is_named_and_to_must_follow_from() {
        let err = Query::parse(Some("x"), None, Some("ten"), Some("7"), NOW).unwrap_err();
        let names: Vec<_> = err.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["from", "network"]);
        assert_eq!(err[0].value, "x");

        let err = Query::parse(Some("now"), Some("-1h"), None, None, NOW).unwrap_err();
        assert_eq!(err[0].name, "to");
        assert!(
            err[0].why.contains("2024-09-13T06:49:00Z"),
            "{}",
            err[0].why
        );

        let q = Query::parse(Some(""), Some(" "), Some("3"), None, NOW).unwrap();
        assert_eq!(
            q,
            Query {
                network: Some(3),
                ..Default::default()
            }
        );
    }

    #[test]
    fn directories_span_their_day_or_hour() {
        let day = 1_726_185_600_000_000; // 2024-09-13T00:00:00Z
        let h = 3_600_000_000;
        assert_eq!(
            dir_span_us(Path::new("r/date=2024-09-13")),
            Some((day, day + 24 * h))
        );
        assert_eq!(
            dir_span_us(Path::new("r/date=2024-09-13/hour=06")),
            Some((day + 6 * h, day + 7 * h))
        );
        assert_eq!(dir_span_us(Path::new("r/hour=06")), None);
        assert_eq!(dir_span_us(Path::new("r/partition=3")), None);
        assert_eq!(dir_span_us(Path::new("r/date=junk")), None);

        let q = Query {
            from_us: Some(day + 6 * h + 60_000_000),
            to_us: Some(day + 7 * h),
            ..Default::default()
        };
        assert!(q.overlaps(day + 6 * h, day + 7 * h));
        assert!(!q.overlaps(day + 7 * h, day + 8 * h), "to is exclusive");
        assert!(!q.overlaps(day + 5 * h, day + 6 * h));
    }
}
