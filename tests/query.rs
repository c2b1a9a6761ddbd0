//! The query side against a seeded run on the real broker: `landfall windows` merges the
//! partition files exactly as the reference from the committed records says; a narrow time
//! range reads only its directories and files; `/windows` answers the same over HTTP, from
//! `landfall serve` and from the consumer's port; and the README's DuckDB, Polars and Spark
//! snippets, run verbatim, agree with it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::harness::*;
use support::output::*;
use support::*;

/// The snippets' "now": their last hour starts at 07:20, inside the seeded run.
const NOW: &str = "2024-09-13T08:20:00Z";

/// (window start µs, campaign) -> (count, sum ms, min ms, max ms, partition files).
type Merged = BTreeMap<(i64, i64), (i64, i64, i64, i64, u32)>;

/// The reference's per-partition cells merged across partitions, independently of Landfall.
fn merge_partitions(per_partition: &BTreeMap<i32, Cells>) -> Merged {
    let mut out = Merged::new();
    for cells in per_partition.values() {
        for (k, &(n, sum, min, max)) in cells {
            let m = out.entry(*k).or_insert((0, 0, i64::MAX, i64::MIN, 0));
            *m = (m.0 + n, m.1 + sum, m.2.min(min), m.3.max(max), m.4 + 1);
        }
    }
    out
}

fn us(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .timestamp_micros()
}

fn ms(seconds: &serde_json::Value) -> i64 {
    (seconds.as_f64().expect("a number of seconds") * 1000.0).round() as i64
}

fn windows_json(report: &Path, args: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = landfall_windows(report, &[&["--format", "json"], args].concat());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "landfall windows {args:?}: {stderr}");
    let rows = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (rows, stderr)
}

/// The `--explain` line: `scan: dirs_scanned=3 dirs_skipped=2 ...`.
fn scan(stderr: &str) -> BTreeMap<String, u64> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("scan: "))
        .unwrap_or_else(|| panic!("no scan line in {stderr}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("a count"))
        })
        .collect()
}

/// Campaign id -> network id, from the campaign table.
fn networks() -> BTreeMap<i64, i64> {
    std::fs::read_to_string(campaigns())
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let n = f.next().unwrap().parse().unwrap();
            (f.next().unwrap().parse().unwrap(), n)
        })
        .collect()
}

/// The JSON rows as merged cells, checking on the way what every row must hold.
fn cells(rows: &[serde_json::Value]) -> Merged {
    let networks = networks();
    let mut out = Merged::new();
    for r in rows {
        let start = us(r["window_start"].as_str().unwrap());
        assert_eq!(us(r["window_end"].as_str().unwrap()), start + 60_000_000);
        let campaign = r["campaign_id"].as_i64().unwrap();
        assert_eq!(
            r["network_id"].as_i64(),
            networks.get(&campaign).copied(),
            "{r}"
        );
        assert_eq!(
            r["campaign_name"].as_str().is_some(),
            networks.contains_key(&campaign)
        );
        let n = r["total_count"].as_i64().unwrap();
        let sum = ms(&r["sum_duration"]);
        // The average is the sum over the count of the merged row (serde_json's default float
        // parser may land one unit in the last place away, hence the tolerance).
        let avg = sum as f64 / n as f64 / 1000.0;
        assert!(
            (r["avg_duration"].as_f64().unwrap() - avg).abs() <= avg * 1e-12,
            "{r}: want avg_duration {avg}"
        );
        let cell = (
            n,
            sum,
            ms(&r["min_duration"]),
            ms(&r["max_duration"]),
            r["files"].as_u64().unwrap() as u32,
        );
        assert!(
            out.insert((start, campaign), cell).is_none(),
            "two rows for one (window, campaign): {r}"
        );
    }
    out
}

fn files_named(report: &Path, part: &str) -> usize {
    parquet_files(report)
        .iter()
        .filter(|p| p.to_string_lossy().contains(part))
        .count()
}

#[test]
fn a_seeded_run_queried_every_way() {
    let topic = unique_topic("query");
    // 06:59 to about 08:30 at 5 events per simulated second: hour directories 06, 07 and 08.
    let mut produce = produce_cmd(&topic, 3, 30_000, 2024, 600);
    produce.env("LANDFALL_SIM_EVENTS_PER_SEC", "5");
    run_ok(produce);
    let d = dirs();
    consume_to_end(&topic, &format!("{topic}-g"), &d);
    let committed = read_topic(&topic, "read_committed");
    let want = merge_partitions(&reference(&committed, WINDOW_MS, LATENESS_MS, SKEW_MS).windows);

    check_merging(&d.report, &want);
    check_pruning(&d.report, &want);
    check_http(&d.report);
    check_snippets(&d.report);
    check_finalized_windows_only(&d);
}

/// Merging across partitions equals the reference, cell by cell.
fn check_merging(report: &Path, want: &Merged) {
    let (rows, _) = windows_json(report, &[]);
    let got = cells(&rows);
    assert_eq!(got.len(), want.len(), "merged rows");
    for (k, w) in want {
        assert_eq!(got.get(k), Some(w), "window {} campaign {}", k.0, k.1);
    }
    let multi = want.values().filter(|c| c.4 == 3).count();
    assert!(
        multi * 2 > want.len(),
        "most cells merge three partition files ({multi} of {})",
        want.len()
    );

    // Filters: one network and one campaign.
    let (rows, _) = windows_json(report, &["--network", "2", "--campaign", "40"]);
    let only: Merged = want
        .iter()
        .filter(|(k, _)| k.1 == 40)
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(cells(&rows), only);

    // CSV and the table carry the same rows.
    let csv = landfall_windows(report, &["--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert_eq!(
        csv.lines().count(),
        want.len() + 1,
        "a header and one line per row"
    );
    assert!(csv.starts_with("window_start,window_end,network_id,campaign_id,campaign_name,"));
    let table = landfall_windows(report, &["--limit", "0"]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("|       window_start|"), "{table}");
    assert!(table.contains("|2024-09-13 07:10:00|2024-09-13 07:11:00|"));
    assert_eq!(
        table.lines().filter(|l| l.starts_with("|2024")).count(),
        want.len()
    );
}

/// A narrow time range lists only its hour directory, and decodes only the files whose
/// statistics say they hold its windows.
fn check_pruning(report: &Path, want: &Merged) {
    let total = parquet_files(report).len() as u64;
    let (_, stderr) = windows_json(report, &["--explain"]);
    let full = scan(&stderr);
    assert_eq!(full["dirs_skipped"], 0);
    assert_eq!(full["files_read"], total);

    let (from, to) = (us("2024-09-13T07:10:00Z"), us("2024-09-13T07:12:00Z"));
    let (rows, stderr) = windows_json(
        report,
        &[
            "--from",
            "2024-09-13 07:10",
            "--to",
            "2024-09-13T07:12:00Z",
            "--explain",
        ],
    );
    let s = scan(&stderr);
    let hour07 = files_named(report, "hour=07") as u64;
    let in_range = (files_named(report, "T071000Z") + files_named(report, "T071100Z")) as u64;
    eprintln!(
        "pruning: {total} files in the report; 07:10 to 07:12 read {} of {hour07} files in \
         hour=07 ({} skipped on statistics), {} directories skipped by name: {s:?}",
        s["files_read"], s["files_skipped"], s["dirs_skipped"]
    );
    assert_eq!(in_range, 6, "two windows, three partitions");
    assert_eq!(s["dirs_skipped"], 2, "hour=06 and hour=08 are never listed");
    assert_eq!(
        s["dirs_scanned"], 3,
        "the report, date=2024-09-13 and hour=07"
    );
    assert_eq!(s["files_listed"], hour07);
    assert_eq!(s["files_read"], in_range);
    assert_eq!(s["files_skipped"], hour07 - in_range);
    let range: Merged = want
        .range((from, i64::MIN)..(to, i64::MIN))
        .map(|(k, v)| (*k, *v))
        .collect();
    assert_eq!(cells(&rows), range);
    assert_eq!(s["rows_read"], s["rows_matched"]);
}

/// `landfall serve` answers `/windows` like `landfall windows --format json`, and names bad
/// parameters in a 400.
fn check_http(report: &Path) {
    let logs = scratch();
    let mut cmd = Command::new(landfall_bin());
    cmd.arg("serve").arg("--output-dir").arg(report);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, logs.path(), "serve");
    let mut serve = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(20));
    wait_until("landfall serve", Duration::from_secs(20), || {
        http_get(port, "/healthz").is_some()
    });
    let cli = |args: &[&str]| {
        let out = landfall_windows(report, &[&["--format", "json"], args].concat());
        String::from_utf8(out.stdout)
            .unwrap()
            .trim_end()
            .to_string()
    };
    let ok = |path: &str| {
        let (status, body) = http_get(port, path).expect("an answer");
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    assert_eq!(ok("/windows"), cli(&[]));
    assert_eq!(
        ok("/windows?from=2024-09-13T07:10:00Z&to=2024-09-13+07%3A12&network=2"),
        cli(&[
            "--from",
            "2024-09-13T07:10:00Z",
            "--to",
            "2024-09-13 07:12",
            "--network",
            "2"
        ])
    );
    let csv = ok("/windows?campaign=40&format=csv");
    assert_eq!(
        csv,
        String::from_utf8(
            landfall_windows(report, &["--campaign", "40", "--format", "csv"]).stdout
        )
        .unwrap()
    );

    let (status, body) = http_get(port, "/windows?from=yesterday&campain=40").unwrap();
    assert_eq!(status, 400, "{body}");
    let errors: serde_json::Value = serde_json::from_str(&body).unwrap();
    let named: Vec<&str> = errors["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["parameter"].as_str().unwrap())
        .collect();
    assert_eq!(named, ["campain", "from"], "{body}");

    let status = serve.stop(
        libc::SIGTERM,
        Duration::from_secs(10),
        "landfall serve",
        None,
    );
    assert!(status.success(), "landfall serve exited with {status}");
}

/// The README's snippets, extracted and run by tests/snippets.py.
fn check_snippets(report: &Path) {
    let python = std::env::var("LANDFALL_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(&python)
        .arg(repo_root().join("tests/snippets.py"))
        .arg(repo_root().join("README.md"))
        .arg(report)
        .arg(landfall_bin())
        .args([NOW, "duckdb", "polars", "spark"])
        // Spark hands Python naive local times; the check reads them in this zone.
        .env("TZ", "UTC")
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "the README snippets disagree with landfall windows (scripts/test installs duckdb, \
         polars and pyspark; set LANDFALL_PYTHON):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for engine in ["duckdb", "polars", "spark"] {
        assert!(
            stdout.contains(&format!("{engine}: top campaigns")),
            "{stdout}"
        );
    }
}

/// Temporary files are never listed, and a file whose footer says it is not a window file (a
/// reject file dropped into the report) is skipped, not merged.
fn check_finalized_windows_only(d: &Dirs) {
    let (before, stderr) = windows_json(&d.report, &["--explain"]);
    let before_scan = scan(&stderr);
    let hour = d.report.join("date=2024-09-13/hour=07");
    let reject = parquet_files(&d.rejects)
        .into_iter()
        .next()
        .expect("a reject file");
    std::fs::copy(
        d.rejects.join(reject),
        hour.join("misplaced-rejects.parquet"),
    )
    .unwrap();
    std::fs::write(
        hour.join(".query-p0000-20240913T071000Z.parquet.1-0.tmp"),
        b"partial",
    )
    .unwrap();
    std::fs::write(hour.join(".hidden.parquet"), b"partial").unwrap();
    let (after, stderr) = windows_json(&d.report, &["--explain"]);
    let s = scan(&stderr);
    assert_eq!(after, before);
    assert_eq!(s["files_listed"], before_scan["files_listed"] + 1);
    assert_eq!(
        s["files_skipped"], 1,
        "the reject file is skipped on its footer"
    );
    assert_eq!(s["files_read"], before_scan["files_read"]);
}

/// The consumer serves `/windows` on its `--http-addr`, from its own report directory.
#[test]
fn the_consumer_answers_windows_on_its_http_port() {
    let topic = unique_topic("query-http");
    run_ok(produce_cmd(&topic, 2, 6_000, 7, 0));
    let d = dirs();
    let mut cmd = consume_cmd(&topic, &format!("{topic}-g"), &d, false);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "consume");
    let mut consumer = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(30));

    let committed = read_topic(&topic, "read_committed");
    let want = merge_partitions(&reference(&committed, WINDOW_MS, LATENESS_MS, SKEW_MS).windows);
    let counted: i64 = want.values().map(|c| c.0).sum();
    let mut body = String::new();
    // The last windows close on the idle timeout (2 s); until then the answer grows.
    wait_until(
        "every window on /windows",
        Duration::from_secs(60),
        || match http_get(port, "/windows") {
            Some((200, b)) => {
                let rows: Vec<serde_json::Value> = serde_json::from_str(&b).unwrap();
                body = b;
                rows.iter()
                    .map(|r| r["total_count"].as_i64().unwrap())
                    .sum::<i64>()
                    == counted
            }
            _ => false,
        },
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(cells(&rows), want);
    let (status, _) = http_get(port, "/windows?to=x").unwrap();
    assert_eq!(status, 400);
    assert_eq!(http_get(port, "/metrics").map(|r| r.0), Some(200));

    let status = consumer.stop(
        libc::SIGTERM,
        Duration::from_secs(10),
        "landfall consume",
        None,
    );
    assert!(status.success(), "landfall consume exited with {status}");
}

/// No broker needed: what a user sees for a missing or empty directory and for bad filters.
#[test]
fn missing_and_empty_directories_and_bad_filters_say_what_is_wrong() {
    let tmp = scratch();
    let missing = tmp.path().join("nope");
    let out = landfall_windows(&missing, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not exist") && stderr.contains("nope"),
        "{stderr}"
    );

    let out = Command::new(landfall_bin())
        .args(["serve", "--http-addr", "127.0.0.1:0", "--output-dir"])
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = landfall_windows(&empty, &["--format", "json"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no finalized window files under"),
        "{stderr}"
    );

    let out = landfall_windows(
        &empty,
        // `--1h` would be an hour in the future if its signs were multiplied out.
        &["--from", "yesterday", "--to=--1h", "--campaign", "x"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for flag in [
        "--from = \"yesterday\"",
        "--to = \"--1h\"",
        "--campaign = \"x\"",
    ] {
        assert!(stderr.contains(flag), "{flag} not named in: {stderr}");
    }
    let out = landfall_windows(
        &empty,
        &["--from", "2024-09-13 08:00", "--to", "2024-09-13"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--to") && stderr.contains("later than from"),
        "{stderr}"
    );
}
