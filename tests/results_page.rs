//! The results page (`GET /` on `landfall serve` and on the consumer's `--http-addr`), opened
//! in headless Chromium as a user's browser would: its title, its three charts, and totals
//! that equal `/windows` for the same filters. The screenshot goes to
//! `target/results-page.png` (and to `LANDFALL_SCREENSHOT_OUT` when set: `scripts/screenshot`
//! uses that for the README's picture).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::harness::*;
use support::*;

fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no chromium on PATH: scripts/test installs Debian's chromium with apt-get")
}

/// Headless Chromium on `url`, with a fresh profile: `extra` says what to do (`--dump-dom`,
/// `--screenshot=FILE`); its stdout.
fn headless(url: &str, profile: &Path, extra: &[&str]) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--window-size=1100,1700", "--virtual-time-budget=2000"])
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium {extra:?} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `name="value"` attribute of an HTML tag's text.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    tag[start..].split('"').next()
}

/// Per campaign (views, summed duration in ms) from the page's totals table, and the total
/// row's views.
fn page_totals(dom: &str) -> (BTreeMap<i64, (u64, i64)>, u64) {
    let mut per = BTreeMap::new();
    let mut total = None;
    for tag in dom
        .split("<tr")
        .skip(1)
        .map(|t| t.split('>').next().unwrap())
    {
        let views = attr(tag, "data-views").map(|v| v.parse::<u64>().unwrap());
        if tag.contains("class=\"total\"") {
            total = views;
        } else if let Some(id) = attr(tag, "data-campaign") {
            let sum: i64 = attr(tag, "data-sum-ms").unwrap().parse().unwrap();
            per.insert(id.parse().unwrap(), (views.unwrap(), sum));
        }
    }
    (per, total.expect("no total row on the page"))
}

/// The same from `/windows` (JSON): per campaign (views, ms), and all views.
fn windows_totals(json: &str) -> (BTreeMap<i64, (u64, i64)>, u64) {
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    let mut per: BTreeMap<i64, (u64, i64)> = BTreeMap::new();
    for r in &rows {
        let e = per.entry(r["campaign_id"].as_i64().unwrap()).or_default();
        e.0 += r["total_count"].as_u64().unwrap();
        e.1 += (r["sum_duration"].as_f64().unwrap() * 1000.0).round() as i64;
    }
    let all = per.values().map(|v| v.0).sum();
    (per, all)
}

#[test]
fn the_results_page_shows_charts_and_the_totals_of_windows() {
    let topic = unique_topic("page");
    produce_golden(&topic, 12_000);
    let d = dirs();
    consume_to_end(&topic, &format!("{topic}-g"), &d);

    let mut cmd = landfall(&["serve", "--output-dir", path_str(&d.report)]);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "serve");
    let _serve = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(20));
    let profile = scratch();

    for filters in [
        "",
        "from=2024-09-13T06:55:00Z&to=2024-09-13+07%3A02&network=2",
    ] {
        let url = format!("http://127.0.0.1:{port}/?{filters}");
        let dom = headless(&url, profile.path(), &["--dump-dom"]);
        assert!(
            dom.contains("<title>Landfall: finalized windows</title>"),
            "{dom}"
        );
        for chart in ["chart-campaigns", "chart-networks", "chart-duration"] {
            assert!(
                dom.contains(&format!("<svg id=\"{chart}\"")),
                "no {chart}: {dom}"
            );
        }
        assert!(
            dom.matches("<polyline").count() >= 3,
            "the charts have no lines"
        );
        let (status, json) = http_get(port, &format!("/windows?{filters}")).unwrap();
        assert_eq!(status, 200, "{json}");
        let (want, want_all) = windows_totals(&json);
        let (got, got_all) = page_totals(&dom);
        assert!(want_all > 0, "no views for {filters:?}");
        assert_eq!(
            got, want,
            "the page's totals differ from /windows for {filters:?}"
        );
        assert_eq!(got_all, want_all);
    }

    let (status, body) = http_get(port, "/?from=yesterday").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("from = \"yesterday\""), "{body}");

    let shot = repo_root().join("target/results-page.png");
    let _ = std::fs::create_dir_all(shot.parent().unwrap());
    let url = format!("http://127.0.0.1:{port}/");
    headless(
        &url,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    if let Some(out) = std::env::var_os("LANDFALL_SCREENSHOT_OUT") {
        std::fs::copy(&shot, out).unwrap();
    }
}

/// The consumer's own page adds its health: ready, and each partition's watermark and lag.
#[test]
fn the_consumers_page_shows_its_health() {
    let topic = unique_topic("pagehealth");
    produce_golden(&topic, 3_000);
    let d = dirs();
    let mut cmd = consume_cmd(&topic, &format!("{topic}-g"), &d, false);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "consume");
    let _consumer = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(30));
    wait_until("the consumer is ready", Duration::from_secs(60), || {
        http_get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    wait_until("windows landed", Duration::from_secs(60), || {
        !support::output::parquet_files(&d.report).is_empty()
    });
    // The health gauges are set at the consumer's next tick (every 200 ms), which can come
    // after the first files are on disk: the page is loaded until it shows them.
    let partitions = |dom: &str| -> String {
        let rows = dom
            .split("<table id=\"partitions\">")
            .nth(1)
            .expect("no partitions table");
        rows.split("</table>").next().unwrap().to_string()
    };
    let mut dom = String::new();
    wait_until(
        "the page shows every partition's watermark",
        Duration::from_secs(60),
        || {
            let profile = scratch();
            dom = headless(
                &format!("http://127.0.0.1:{port}/"),
                profile.path(),
                &["--dump-dom"],
            );
            let rows = partitions(&dom);
            (0..3).all(|p| rows.contains(&format!("<td>{p}</td><td>2024-09-13T")))
        },
    );
    assert!(dom.contains("<p id=\"ready\">ready</p>"), "{dom}");
    assert!(dom.contains("<svg id=\"chart-campaigns\""), "{dom}");
}
