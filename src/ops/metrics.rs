//! Metrics and the HTTP endpoints: `/metrics` (Prometheus text format), `/healthz` (the
//! process is up) and `/readyz` (it is doing its job: the consumer has its partitions and their
//! state, the producer has its transactional id). The consumer (and `landfall serve`) also
//! answers `/windows` from its report directory: see `query::http`.
//!
//! Each role has its own registry, so a scrape shows only what that process does. Names follow
//! `landfall_<noun>_<unit>`, with `_total` on counters. Handles that the hot path touches
//! (per-partition counters) are resolved once per assignment, so counting an event is one
//! atomic add.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::consume::decode::RejectReason;

/// Sub-millisecond to seconds: local file and sled work.
const LOCAL_IO_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// A millisecond to ten seconds: round trips to the broker.
const BROKER_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// A second to a day: how late a late event was.
const LATENESS_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
];

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("registered once");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn float_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("registered once");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("registered once");
    h
}

/// What every role reports: when it started (restarts show as changes) and whether it is
/// ready.
pub struct Process {
    pub role: &'static str,
    pub registry: Registry,
    pub ready: AtomicBool,
    ready_gauge: IntGauge,
}

impl Process {
    fn new(role: &'static str) -> Self {
        let registry = Registry::new();
        let start = float_gauge_vec(
            &registry,
            "landfall_start_time_seconds",
            "When this process started, in Unix seconds; a change is a restart",
            &["role"],
        );
        start
            .with_label_values(&[role])
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let ready_gauge = gauge_vec(
            &registry,
            "landfall_ready",
            "1 when the process is ready (see /readyz)",
            &["role"],
        )
        .with_label_values(&[role]);
        Process {
            role,
            registry,
            ready: AtomicBool::new(false),
            ready_gauge,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
        self.ready_gauge.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// The registry in Prometheus's text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The consumer's metrics.
pub struct ConsumerMetrics {
    pub process: Process,
    events: IntCounterVec,
    invalid: IntCounterVec,
    unknown_campaign: IntCounterVec,
    pub lateness: Histogram,
    windows_landed: IntCounterVec,
    pub rows_written: IntCounterVec,
    pub bytes_written: IntCounterVec,
    reject_files: IntCounterVec,
    open_windows: IntGaugeVec,
    watermark: GaugeVec,
    watermark_lag: GaugeVec,
    lag: IntGaugeVec,
    pub land_delay: Histogram,
    pub checkpoint: Histogram,
    pub commit: Histogram,
    pub state_size: IntGauge,
    pub client_restarts: IntCounter,
    campaign_views: IntCounterVec,
    campaign_duration: prometheus::CounterVec,
    /// The two campaign counters by campaign id (None: unknown campaigns), resolved once:
    /// a landed window adds to them without building and hashing label strings.
    campaign_handles: std::sync::Mutex<CampaignHandles>,
}

type CampaignHandles = std::collections::HashMap<Option<i64>, (IntCounter, prometheus::Counter)>;

/// One partition's handles, resolved when it is assigned.
#[derive(Clone)]
pub struct PartitionMetrics {
    pub windowed: IntCounter,
    pub late: IntCounter,
    pub invalid: IntCounter,
    pub unknown_campaign: IntCounter,
    pub windows_landed: IntCounter,
    pub reject_files: IntCounter,
    pub open_windows: IntGauge,
    pub watermark: Gauge,
    pub watermark_lag: Gauge,
    pub lag: IntGauge,
}

impl std::fmt::Debug for PartitionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartitionMetrics")
    }
}

impl ConsumerMetrics {
    fn new() -> Self {
        let process = Process::new("consume");
        let r = &process.registry;
        let p = &["partition"];
        let m = ConsumerMetrics {
            events: counter_vec(r, "landfall_events_total", "Records read, by partition and outcome: windowed, late or invalid", &["partition", "outcome"]),
            invalid: counter_vec(r, "landfall_invalid_events_total", "Invalid records by reason", &["reason"]),
            unknown_campaign: counter_vec(r, "landfall_unknown_campaign_events_total", "Windowed records whose campaign is not in the campaign table", p),
            lateness: histogram(r, "landfall_late_event_lateness_seconds", "How far the watermark had passed a late event's window end", LATENESS_BUCKETS),
            windows_landed: counter_vec(r, "landfall_windows_landed_total", "Window files landed (written now; not counting files found from an earlier run)", p),
            rows_written: counter_vec(r, "landfall_rows_written_total", "Rows written to Parquet, by kind: window or rejects", &["kind"]),
            bytes_written: counter_vec(r, "landfall_written_bytes_total", "Bytes of Parquet written, by kind: window or rejects", &["kind"]),
            reject_files: counter_vec(r, "landfall_reject_files_landed_total", "Reject files landed", p),
            open_windows: gauge_vec(r, "landfall_open_windows", "Windows open in memory", p),
            watermark: float_gauge_vec(r, "landfall_watermark_seconds", "The partition's watermark, in Unix seconds", p),
            watermark_lag: float_gauge_vec(r, "landfall_watermark_lag_seconds", "Wall clock minus the watermark, in seconds", p),
            lag: gauge_vec(r, "landfall_consumer_lag_records", "Records between the consumer's position and the partition's end (last stable offset, from the broker)", p),
            land_delay: histogram(r, "landfall_window_land_delay_seconds", "From a window closing to its file landed (fsynced and renamed)", LOCAL_IO_BUCKETS),
            checkpoint: histogram(r, "landfall_checkpoint_duration_seconds", "One state checkpoint: sled batch and flush", LOCAL_IO_BUCKETS),
            commit: histogram(r, "landfall_commit_duration_seconds", "One synchronous offset commit to Kafka", BROKER_BUCKETS),
            state_size: {
                let g = IntGauge::new("landfall_state_size_bytes", "Size of the sled state store on disk").expect("valid metric");
                r.register(Box::new(g.clone())).expect("registered once");
                g
            },
            client_restarts: {
                let c = IntCounter::new("landfall_client_restarts_total", "Kafka clients replaced after a fatal client error").expect("valid metric");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            campaign_views: counter_vec(r, "landfall_campaign_views_total", "Views in finalized windows, counted when the window file lands", &["campaign_id", "campaign_name", "network_id"]),
            campaign_duration: {
                let c = prometheus::CounterVec::new(Opts::new("landfall_campaign_view_duration_seconds_total", "View duration in finalized windows, counted when the window file lands"), &["campaign_id", "campaign_name", "network_id"]).expect("valid metric");
                r.register(Box::new(c.clone())).expect("registered once");
                c
            },
            campaign_handles: Default::default(),
            process,
        };
        // Every reason and kind exists from the start, at zero, so rates are defined.
        for reason in RejectReason::ALL {
            if reason != RejectReason::Late {
                m.invalid.with_label_values(&[reason.as_str()]);
            }
        }
        for kind in ["window", "rejects"] {
            m.rows_written.with_label_values(&[kind]);
            m.bytes_written.with_label_values(&[kind]);
        }
        m
    }

    pub fn partition(&self, partition: i32) -> PartitionMetrics {
        let p = partition.to_string();
        let p = p.as_str();
        PartitionMetrics {
            windowed: self.events.with_label_values(&[p, "windowed"]),
            late: self.events.with_label_values(&[p, "late"]),
            invalid: self.events.with_label_values(&[p, "invalid"]),
            unknown_campaign: self.unknown_campaign.with_label_values(&[p]),
            windows_landed: self.windows_landed.with_label_values(&[p]),
            reject_files: self.reject_files.with_label_values(&[p]),
            open_windows: self.open_windows.with_label_values(&[p]),
            watermark: self.watermark.with_label_values(&[p]),
            watermark_lag: self.watermark_lag.with_label_values(&[p]),
            lag: self.lag.with_label_values(&[p]),
        }
    }

    /// A partition moved to another instance: its gauges disappear from this one's scrape
    /// (the new owner reports them), so `max by (partition)` never picks a stale value.
    /// Counters stay: they only ever add up across instances.
    pub fn release_partition(&self, partition: i32) {
        let p = partition.to_string();
        let _ = self.open_windows.remove_label_values(&[&p]);
        let _ = self.watermark.remove_label_values(&[&p]);
        let _ = self.watermark_lag.remove_label_values(&[&p]);
        let _ = self.lag.remove_label_values(&[&p]);
    }

    pub fn invalid(&self, reason: RejectReason) {
        self.invalid.with_label_values(&[reason.as_str()]).inc();
    }

    /// Every campaign of the table (and "unknown") exists from the start at zero, so the
    /// first window of each is counted by `increase()` too.
    pub fn init_campaigns(&self, table: &crate::consume::enrich::CampaignTable) {
        for (id, c) in table.iter() {
            let labels = [id.to_string(), c.name.clone(), c.network_id.to_string()];
            let labels = [labels[0].as_str(), labels[1].as_str(), labels[2].as_str()];
            self.campaign_views.with_label_values(&labels);
            self.campaign_duration.with_label_values(&labels);
        }
        self.campaign_views.with_label_values(&["unknown"; 3]);
        self.campaign_duration.with_label_values(&["unknown"; 3]);
    }

    /// A window file landed: its views count in the campaign totals.
    pub fn campaigns_landed(
        &self,
        table: &crate::consume::enrich::CampaignTable,
        by_campaign: &std::collections::BTreeMap<i64, crate::consume::window::Agg>,
    ) {
        let mut handles = self
            .campaign_handles
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (&id, agg) in by_campaign {
            let campaign = table.get(id);
            let (views, duration) = handles.entry(campaign.map(|_| id)).or_insert_with(|| {
                let (id, name, network) = match campaign {
                    Some(c) => (id.to_string(), c.name.clone(), c.network_id.to_string()),
                    None => ("unknown".into(), "unknown".into(), "unknown".into()),
                };
                let labels = [id.as_str(), name.as_str(), network.as_str()];
                (
                    self.campaign_views.with_label_values(&labels),
                    self.campaign_duration.with_label_values(&labels),
                )
            });
            views.inc_by(agg.count);
            duration.inc_by(agg.sum_ms as f64 / 1000.0);
        }
    }
}

/// The producer's metrics.
pub struct ProducerMetrics {
    pub process: Process,
    pub sent: IntCounter,
    txns: IntCounterVec,
    txn_records: IntCounterVec,
    errors: IntCounterVec,
    pub txn_duration: Histogram,
}

impl ProducerMetrics {
    fn new() -> Self {
        let process = Process::new("produce");
        let r = &process.registry;
        let sent = IntCounter::new(
            "landfall_producer_records_sent_total",
            "Records acknowledged by the broker (committed or not)",
        )
        .expect("valid metric");
        r.register(Box::new(sent.clone())).expect("registered once");
        let m = ProducerMetrics {
            sent,
            txns: counter_vec(r, "landfall_producer_transactions_total", "Transactions ended, by outcome: committed or aborted", &["outcome"]),
            txn_records: counter_vec(r, "landfall_producer_transaction_records_total", "Records in ended transactions, by outcome", &["outcome"]),
            errors: counter_vec(r, "landfall_producer_errors_total", "Producer errors by kind: delivery, send, abortable (transaction retried), retriable (commit retried), restarted (a new producer after an abort only a new epoch resolves)", &["kind"]),
            txn_duration: histogram(r, "landfall_producer_transaction_duration_seconds", "From a transaction's begin to its commit or abort", BROKER_BUCKETS),
            process,
        };
        for outcome in ["committed", "aborted"] {
            m.txns.with_label_values(&[outcome]);
            m.txn_records.with_label_values(&[outcome]);
        }
        for kind in ["delivery", "send", "abortable", "retriable", "restarted"] {
            m.errors.with_label_values(&[kind]);
        }
        m
    }

    pub fn txn_ended(&self, committed: bool, records: usize, opened: std::time::Instant) {
        let outcome = if committed { "committed" } else { "aborted" };
        self.txns.with_label_values(&[outcome]).inc();
        self.txn_records
            .with_label_values(&[outcome])
            .inc_by(records as u64);
        self.txn_duration.observe(opened.elapsed().as_secs_f64());
    }

    pub fn error(&self, kind: &str) {
        self.errors.with_label_values(&[kind]).inc();
    }
}

pub fn consumer() -> &'static ConsumerMetrics {
    static M: OnceLock<ConsumerMetrics> = OnceLock::new();
    M.get_or_init(ConsumerMetrics::new)
}

pub fn producer() -> &'static ProducerMetrics {
    static M: OnceLock<ProducerMetrics> = OnceLock::new();
    M.get_or_init(ProducerMetrics::new)
}

#[derive(Debug, thiserror::Error)]
#[error("--http-addr (LANDFALL_HTTP_ADDR) {addr}: cannot listen: {source}")]
pub struct BindError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` for `process` until
/// `shutdown`, and `/windows` over `report_dir` when given (the consumer's). Binding happens
/// before this returns, so a taken port fails the command at once.
pub async fn serve(
    addr: SocketAddr,
    process: &'static Process,
    report_dir: Option<crate::store::Root>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    use axum::http::StatusCode;
    use axum::routing::get;

    let mut app = axum::Router::new()
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    process.render(),
                )
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if process.is_ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        );
    let mut routes = "/metrics, /healthz and /readyz";
    if let Some(dir) = report_dir {
        let health: crate::query::http::HealthSource = std::sync::Arc::new(move || health(process));
        app = app.merge(crate::query::http::router(dir, Some(health)));
        routes = "/metrics, /healthz, /readyz, /windows and / (the results page)";
    }
    spawn_server(addr, app, routes, process.role, shutdown).await
}

/// The consumer's health for its results page: ready, and each partition's watermark and lag
/// as its metrics report them.
pub fn health(process: &Process) -> crate::query::page::Health {
    let mut parts: std::collections::BTreeMap<String, (Option<f64>, Option<f64>)> =
        Default::default();
    for family in process.registry.gather() {
        let watermark = match family.name() {
            "landfall_watermark_seconds" => true,
            "landfall_consumer_lag_records" => false,
            _ => continue,
        };
        for m in family.get_metric() {
            let Some(p) = m.get_label().iter().find(|l| l.name() == "partition") else {
                continue;
            };
            let entry = parts.entry(p.value().to_string()).or_default();
            let v = m.get_gauge().get_value();
            if watermark {
                // The gauge reads 0 until the partition's first event sets it: not 1970, but
                // not known yet ("-" on the page).
                entry.0 = (v > 0.0).then_some(v);
            } else {
                entry.1 = Some(v);
            }
        }
    }
    let mut partitions: Vec<_> = parts.into_iter().map(|(p, (w, l))| (p, w, l)).collect();
    partitions.sort_by_key(|(p, ..)| p.parse::<i64>().unwrap_or(i64::MAX));
    crate::query::page::Health {
        ready: process.is_ready(),
        partitions,
    }
}

/// `landfall serve`: the results page, `/windows` over `report_dir`, and `/healthz`, until
/// `shutdown`.
pub async fn serve_windows(
    addr: SocketAddr,
    report_dir: crate::store::Root,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let app = crate::query::http::router(report_dir, None)
        .route("/healthz", axum::routing::get(|| async { "ok\n" }));
    spawn_server(
        addr,
        app,
        "/ (the results page), /windows and /healthz",
        "serve",
        shutdown,
    )
    .await
}

async fn spawn_server(
    addr: SocketAddr,
    app: axum::Router,
    routes: &str,
    role: &str,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, BindError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    info!(addr = %local, role, "serving {routes}");
    Ok(tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = server.await {
            warn!(error = %e, "the HTTP endpoint stopped");
        }
    }))
}
