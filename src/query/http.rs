//! `GET /windows?from=&to=&network=&campaign=&format=json|csv`: the same answer as
//! `landfall windows`, over HTTP for BI tools. Served beside /metrics by the consumer, or alone
//! by `landfall serve`.

use std::sync::Arc;

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::warn;

use super::{query, render_csv, render_json, BadFilter, Query};
use crate::readback::ReadError;
use crate::store::Root;

/// The `/windows` route over the report directory `dir`.
pub fn router(dir: Root) -> Router {
    let dir = Arc::new(dir);
    Router::new().route(
        "/windows",
        get(move |uri: Uri| {
            let dir = Arc::clone(&dir);
            async move { answer(&dir, uri.query().unwrap_or("")).await }
        }),
    )
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
/// Anything else, or a repeated one, is a bad parameter.
fn parameters(query_string: &str) -> ([Option<String>; 5], Vec<BadFilter>) {
    const NAMES: [&str; 5] = ["from", "to", "network", "campaign", "format"];
    let mut given: [Option<String>; 5] = Default::default();
    let mut bad = Vec::new();
    for (k, v) in pairs(query_string) {
        match NAMES.iter().position(|n| *n == k) {
            Some(i) if given[i].is_some() => bad.push(BadFilter {
                name: k,
                value: v,
                why: "given more than once; give each parameter at most once".into(),
            }),
            Some(i) => given[i] = Some(v),
            None => bad.push(BadFilter {
                name: k,
                value: v,
                why: format!("no such parameter; expected {}", NAMES.join(", ")),
            }),
        }
    }
    (given, bad)
}

async fn answer(dir: &Arc<Root>, query_string: &str) -> Response {
    let (given, mut bad) = parameters(query_string);
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
