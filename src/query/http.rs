//! `GET /windows?from=&to=&network=&campaign=&format=json|csv`: the same answer as
//! `landfall windows`, over HTTP for BI tools; and `GET /?from=&to=&network=&campaign=`, the
//! results page (see `page`) over the same answer. Served beside /metrics by the consumer, or
//! alone by `landfall serve`.

use std::sync::Arc;

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::warn;

use super::page::{self, Health};
use super::{query, render_csv, render_json, BadFilter, Query};
use crate::readback::ReadError;
use crate::store::Root;

/// What a consumer's page shows of its health, read when the page is asked for.
pub type HealthSource = Arc<dyn Fn() -> Health + Send + Sync>;

/// The `/windows` route and the results page `/` over the report directory `dir`; the page
/// shows `health` too when given (the consumer's).
pub fn router(dir: Root, health: Option<HealthSource>) -> Router {
    let dir = Arc::new(dir);
    let page_dir = Arc::clone(&dir);
    Router::new()
        .route(
            "/windows",
            get(move |uri: Uri| {
                let dir = Arc::clone(&dir);
                async move { answer(&dir, uri.query().unwrap_or("")).await }
            }),
        )
        .route(
            "/",
            get(move |uri: Uri| {
                let (dir, health) = (Arc::clone(&page_dir), health.clone());
                async move { results_page(&dir, health, uri.query().unwrap_or("")).await }
            }),
        )
}

/// `GET /`: the results page for the filters given; bad filters are shown on the page (400).
async fn results_page(
    dir: &Arc<Root>,
    health: Option<HealthSource>,
    query_string: &str,
) -> Response {
    let (given, mut bad) = parameters(query_string, &["from", "to", "network", "campaign"]);
    let [from, to, network, campaign, _] = given;
    let parsed = Query::parse(
        from.as_deref(),
        to.as_deref(),
        network.as_deref(),
        campaign.as_deref(),
        chrono::Utc::now().timestamp_micros(),
    );
    let q = match parsed {
        Ok(q) => Some(q),
        Err(more) => {
            bad.extend(more);
            None
        }
    };
    let answer = match q.filter(|_| bad.is_empty()) {
        Some(q) => {
            let reading = Arc::clone(dir);
            match tokio::task::spawn_blocking(move || query(&reading, &q)).await {
                Ok(Ok(a)) => Some(a),
                Ok(Err(e)) => {
                    bad.push(BadFilter {
                        name: "report".into(),
                        value: dir.to_string(),
                        why: e.to_string(),
                    });
                    None
                }
                Err(e) => {
                    warn!(error = %e, "GET / failed");
                    None
                }
            }
        }
        None => None,
    };
    let health = health.map(|h| h());
    let report = dir.to_string();
    let ctx = page::Context {
        report: &report,
        filters: [
            from.as_deref(),
            to.as_deref(),
            network.as_deref(),
            campaign.as_deref(),
        ],
        bad: &bad,
        scan: answer.as_ref().map(|a| &a.scan),
        health: health.as_ref(),
    };
    let rows = answer.as_ref().map_or(&[][..], |a| &a.rows[..]);
    let status = if bad.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let html = page::render(rows, &ctx);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        html,
    )
        .into_response()
}

/// `name=value` pairs of a query string, percent-decoded, with `+` as a space.
fn pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn json_error(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// 400, with one entry per bad parameter: its name, its value and what is wrong.
fn bad_request(bad: &[BadFilter]) -> Response {
    let errors: Vec<_> = bad
        .iter()
        .map(|b| {
            serde_json::json!({
                "parameter": b.name,
                "value": b.value,
                "error": format!("{} = {:?}: {}", b.name, b.value, b.why),
            })
        })
        .collect();
    json_error(
        StatusCode::BAD_REQUEST,
        serde_json::json!({ "errors": errors }),
    )
}

/// The parameters `/windows` takes, each at most once: from, to, network, campaign, format.
const WINDOWS_PARAMETERS: [&str; 5] = ["from", "to", "network", "campaign", "format"];

/// The parameters of `names` (at most five, in the order of [`WINDOWS_PARAMETERS`]), each at
/// most once. Anything else, or a repeated one, is a bad parameter.
fn parameters(query_string: &str, names: &[&str]) -> ([Option<String>; 5], Vec<BadFilter>) {
    let mut given: [Option<String>; 5] = Default::default();
    let mut bad = Vec::new();
    for (k, v) in pairs(query_string) {
        match names.iter().position(|n| *n == k) {
            Some(i) if given[i].is_some() => bad.push(BadFilter {
                name: k,
                value: v,
                why: "given more than once; give each parameter at most once".into(),
            }),
            Some(i) => given[i] = Some(v),
            None => bad.push(BadFilter {
                name: k,
                value: v,
                why: format!("no such parameter; expected {}", names.join(", ")),
            }),
        }
    }
    (given, bad)
}

async fn answer(dir: &Arc<Root>, query_string: &str) -> Response {
    let (given, mut bad) = parameters(query_string, &WINDOWS_PARAMETERS);
    let [from, to, network, campaign, format] = given;
    let csv = match format.as_deref().map(str::trim) {
        None | Some("") | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            bad.push(BadFilter {
                name: "format".into(),
                value: other.to_string(),
                why: "expected json or csv".into(),
            });
            false
        }
    };
    let now_us = chrono::Utc::now().timestamp_micros();
    let q = Query::parse(
        from.as_deref(),
        to.as_deref(),
        network.as_deref(),
        campaign.as_deref(),
        now_us,
    );
    let q = match q {
        Ok(q) if bad.is_empty() => q,
        Ok(_) => return bad_request(&bad),
        Err(more) => {
            bad.extend(more);
            return bad_request(&bad);
        }
    };
    let dir = Arc::clone(dir);
    // Reading files blocks; keep it off the async workers.
    let read = tokio::task::spawn_blocking(move || query(&dir, &q)).await;
    let body = match read {
        Ok(Ok(a)) if csv => render_csv(&a.rows).map_err(|e| e.to_string()),
        Ok(Ok(a)) => render_json(&a.rows).map_err(|e| e.to_string()),
        Ok(Err(e @ ReadError::Missing(_))) => {
            return json_error(
                StatusCode::NOT_FOUND,
                serde_json::json!({ "error": e.to_string() }),
            )
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("query thread: {e}")),
    };
    match body {
        Ok(body) => {
            let kind = if csv {
                "text/csv; charset=utf-8"
            } else {
                "application/json"
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, kind)], body).into_response()
        }
        Err(e) => {
            warn!(error = %e, "GET /windows failed");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": e }),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_like_forms() {
        assert_eq!(
            pairs("from=2024-09-13+06%3A49&to=&network=2&&x"),
            [
                ("from".into(), "2024-09-13 06:49".into()),
                ("to".into(), String::new()),
                ("network".into(), "2".into()),
                ("x".into(), String::new()),
            ]
        );
    }
}
