//! The results page at `/`: views per minute by campaign and by network and the average view
//! duration, over the finalized windows, as SVG charts drawn on the server, and the totals per
//! campaign. Its numbers are the merged rows `/windows` answers with, for the same filters.
//! Served by a consumer, it also shows the consumer's health: ready, and the watermark and lag
//! of each partition.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::chart::{line_chart, Series};
use super::render::rfc3339;
use super::{BadFilter, ScanStats, WindowRow};

/// How many campaigns get a line of their own; the rest are summed into one.
const TOP_CAMPAIGNS: usize = 8;

/// A consumer's health, for the page it serves.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub ready: bool,
    /// (partition, watermark in Unix seconds, lag in records), as the metrics report them.
    pub partitions: Vec<(String, Option<f64>, Option<f64>)>,
}

/// What the page shows above its charts: the report, the filters as given, the scan.
pub struct Context<'a> {
    pub report: &'a str,
    /// The filters as given: from, to, network, campaign.
    pub filters: [Option<&'a str>; 4],
    pub bad: &'a [BadFilter],
    pub scan: Option<&'a ScanStats>,
    pub health: Option<&'a Health>,
}

/// `s` with the five HTML special characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Per-campaign totals: name, network, views and the summed duration in milliseconds.
#[derive(Default)]
struct Total {
    name: Option<String>,
    network: Option<i64>,
    views: u64,
    sum_ms: i64,
}

/// Adds `v` at `us` to a per-window series.
fn add(series: &mut BTreeMap<i64, f64>, us: i64, v: f64) {
    *series.entry(us).or_default() += v;
}

fn to_series(name: String, points: BTreeMap<i64, f64>) -> Series {
    Series {
        name,
        points: points.into_iter().collect(),
    }
}

/// The three charts' series, from merged rows.
fn series(rows: &[WindowRow], totals: &BTreeMap<i64, Total>) -> [Vec<Series>; 3] {
    let mut ranked: Vec<(&i64, &Total)> = totals.iter().collect();
    ranked.sort_by(|a, b| b.1.views.cmp(&a.1.views).then(a.0.cmp(b.0)));
    let top: Vec<i64> = ranked
        .iter()
        .take(TOP_CAMPAIGNS)
        .map(|(id, _)| **id)
        .collect();
    let mut by_campaign: BTreeMap<Option<i64>, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut by_network: BTreeMap<Option<i64>, BTreeMap<i64, f64>> = BTreeMap::new();
    let mut duration: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for w in rows {
        let r = &w.row;
        let key = top.contains(&r.campaign_id).then_some(r.campaign_id);
        let views = r.agg.count as f64;
        add(
            by_campaign.entry(key).or_default(),
            r.window_start_us,
            views,
        );
        add(
            by_network.entry(r.network_id).or_default(),
            r.window_start_us,
            views,
        );
        let d = duration.entry(r.window_start_us).or_default();
        d.0 += r.agg.sum_ms as f64;
        d.1 += views;
    }
    let campaigns = by_campaign
        .into_iter()
        .map(|(id, points)| {
            let name = match id.and_then(|id| totals.get(&id).map(|t| (id, t))) {
                Some((id, t)) => {
                    format!("{id} {}", t.name.as_deref().unwrap_or("(not in the table)"))
                }
                None => "other campaigns".into(),
            };
            to_series(name, points)
        })
        .collect();
    let networks = by_network
        .into_iter()
        .map(|(n, points)| {
            let name = n.map_or("campaigns not in the table".into(), |n| {
                format!("network {n}")
            });
            to_series(name, points)
        })
        .collect();
    let avg = duration
        .into_iter()
        .filter(|(_, (_, n))| *n > 0.0)
        .map(|(us, (sum_ms, n))| (us, sum_ms / n / 1000.0))
        .collect();
    let avg = vec![Series {
        name: "all campaigns".into(),
        points: avg,
    }];
    [campaigns, networks, avg]
}

fn totals(rows: &[WindowRow]) -> BTreeMap<i64, Total> {
    let mut totals: BTreeMap<i64, Total> = BTreeMap::new();
    for w in rows {
        let r = &w.row;
        let t = totals.entry(r.campaign_id).or_default();
        t.name = r.campaign_name.clone();
        t.network = r.network_id;
        t.views += r.agg.count;
        t.sum_ms += r.agg.sum_ms;
    }
    totals
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#1d2430;max-width:1000px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}p.note{color:#555}\
table{border-collapse:collapse;font-variant-numeric:tabular-nums}\
td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:right}\
td:first-child,th:first-child,td:nth-child(2),th:nth-child(2){text-align:left}tr.total td{font-weight:bold}\
.bad{color:#a40000}form input{width:150px;margin-right:8px}";

fn filter_form(out: &mut String, ctx: &Context) {
    out.push_str("<form method=\"get\" action=\"/\">");
    for (name, value) in ["from", "to", "network", "campaign"]
        .iter()
        .zip(ctx.filters)
    {
        let _ = write!(
            out,
            "<label>{name} <input name=\"{name}\" value=\"{}\"></label>",
            esc(value.unwrap_or(""))
        );
    }
    out.push_str("<button type=\"submit\">Show</button></form>");
    for b in ctx.bad {
        let _ = write!(
            out,
            "<p class=\"bad\">{} = {:?}: {}</p>",
            esc(&b.name),
            esc(&b.value),
            esc(&b.why)
        );
    }
}

fn health_section(out: &mut String, h: &Health) {
    let _ =
        write!(
        out,
        "<h2>Consumer</h2><p id=\"ready\">{}</p><table id=\"partitions\"><tr><th>partition</th>\
         <th>watermark (UTC)</th><th>lag (records)</th></tr>",
        if h.ready { "ready" } else { "not ready (starting, or rebalancing)" }
    );
    for (p, watermark, lag) in &h.partitions {
        let wm = watermark.map_or("-".into(), |s| rfc3339((s * 1e6) as i64));
        let lag = lag.map_or("-".into(), |l| format!("{l:.0}"));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{wm}</td><td>{lag}</td></tr>",
            esc(p)
        );
    }
    out.push_str("</table>");
}

fn totals_table(out: &mut String, totals: &BTreeMap<i64, Total>) {
    out.push_str(
        "<h2>Totals</h2><table id=\"totals\"><tr><th>campaign</th><th>name</th><th>network</th>\
         <th>views</th><th>avg duration (s)</th></tr>",
    );
    let (mut views, mut sum_ms) = (0u64, 0i64);
    for (id, t) in totals {
        views += t.views;
        sum_ms += t.sum_ms;
        let avg = if t.views > 0 {
            t.sum_ms as f64 / t.views as f64 / 1000.0
        } else {
            0.0
        };
        let _ = write!(
            out,
            "<tr class=\"campaign\" data-campaign=\"{id}\" data-views=\"{}\" data-sum-ms=\"{}\">\
             <td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{avg:.3}</td></tr>",
            t.views,
            t.sum_ms,
            esc(t.name.as_deref().unwrap_or("(not in the table)")),
            t.network.map_or(String::new(), |n| n.to_string()),
            t.views
        );
    }
    let _ = write!(
        out,
        "<tr class=\"total\" data-views=\"{views}\" data-sum-ms=\"{sum_ms}\"><td>all</td><td></td>\
         <td></td><td id=\"total-views\">{views}</td><td></td></tr></table>"
    );
}

/// The page, for merged `rows`.
pub fn render(rows: &[WindowRow], ctx: &Context) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Landfall: finalized windows</title><style>{STYLE}</style></head><body>\
         <h1>Landfall: finalized windows</h1><p class=\"note\">Report: <code>{}</code>. Only \
         windows that have landed are shown: a window appears about a minute plus the allowed \
         lateness after it ends. The same numbers as <code>GET /windows</code> with these \
         filters.</p>",
        esc(ctx.report)
    );
    filter_form(&mut out, ctx);
    if let Some(h) = ctx.health {
        health_section(&mut out, h);
    }
    let totals = totals(rows);
    if rows.is_empty() {
        out.push_str("<p id=\"empty\">No finalized windows match.</p>");
    } else {
        let [campaigns, networks, avg] = series(rows, &totals);
        for (id, title, unit, s) in [
            (
                "chart-campaigns",
                "Views per minute by campaign",
                "views",
                &campaigns,
            ),
            (
                "chart-networks",
                "Views per minute by network",
                "views",
                &networks,
            ),
            ("chart-duration", "Average view duration", "seconds", &avg),
        ] {
            let _ = write!(out, "<h2>{title}</h2>");
            match line_chart(id, unit, s) {
                Ok(svg) => out.push_str(&svg),
                Err(e) => {
                    let _ = write!(out, "<p class=\"bad\">chart failed: {}</p>", esc(&e));
                }
            }
        }
    }
    totals_table(&mut out, &totals);
    if let Some(scan) = ctx.scan {
        let _ = write!(out, "<p class=\"note\">{}</p>", esc(&scan.to_string()));
    }
    out.push_str("</body></html>\n");
    out
}
