//! Observability against real components: the HTTP endpoints before and after assignment, a
//! real Prometheus server scraping a real producer and consumer and answering every PromQL
//! expression of every Grafana dashboard, and the deployment files checked by their own tools
//! (promtool, docker-compose v1). `scripts/test` installs Prometheus and docker-compose.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::harness::*;
use support::prometheus::{query, tool, Prometheus};
use support::*;

fn wait_for_status(port: u16, path: &str, want: u16, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let got = http_get(port, path);
        if let Some((status, body)) = &got {
            if *status == want {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path} on port {port} did not answer {want} within {timeout:?} (last: {got:?})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn endpoints_answer_before_and_after_assignment() {
    // Before: the broker is unreachable, so no partitions are assigned yet.
    let d = dirs();
    let mut cmd = consume_cmd("no-such-topic", "g", &d, false);
    cmd.env("LANDFALL_BROKERS", "127.0.0.1:1");
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "waiting");
    let mut waiting = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(10));
    wait_for_status(port, "/healthz", 200, Duration::from_secs(10));
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(503));
    let metrics = wait_for_status(port, "/metrics", 200, Duration::from_secs(5));
    assert!(
        metrics.contains("landfall_ready{role=\"consume\"} 0"),
        "{metrics}"
    );
    waiting.kill9();

    // After: partitions assigned, state loaded; then a clean stop.
    let topic = unique_topic("endpoints");
    run_ok(produce_cmd(&topic, 3, 5_000, 1, 0));
    let mut cmd = consume_cmd(&topic, &format!("{topic}-g"), &d, false);
    http_on_any_port(&mut cmd);
    let log = log_stderr(&mut cmd, d.tmp.path(), "running");
    let mut consumer = ChildGuard::spawn(cmd);
    let port = bound_port(&log, Duration::from_secs(30));
    wait_for_status(port, "/readyz", 200, Duration::from_secs(30));
    wait_until(
        "records counted in /metrics",
        Duration::from_secs(30),
        || {
            http_get(port, "/metrics").is_some_and(|(_, m)| {
                m.contains("landfall_ready{role=\"consume\"} 1")
                    && m.contains("landfall_events_total{outcome=\"windowed\",partition=\"2\"}")
                    && m.contains("landfall_windows_landed_total{partition=\"0\"}")
            })
        },
    );
    let status = consumer.stop(libc::SIGTERM, Duration::from_secs(10), "consumer", None);
    assert!(status.success(), "{status}: {}", read_log(&log));

    // The producer: ready once its transactional id is initialised.
    let mut cmd = produce_cmd(&topic, 3, 0, 2, 0);
    cmd.args(["--rate", "500"]);
    http_on_any_port(&mut cmd);
    let producer_log = log_stderr(&mut cmd, d.tmp.path(), "producer");
    let mut producer = ChildGuard::spawn(cmd);
    let port = bound_port(&producer_log, Duration::from_secs(30));
    wait_for_status(port, "/readyz", 200, Duration::from_secs(30));
    wait_until(
        "a committed transaction in /metrics",
        Duration::from_secs(30),
        || {
            http_get(port, "/metrics").is_some_and(|(_, m)| {
                m.lines().any(|l| {
                    l.starts_with("landfall_producer_transactions_total{outcome=\"committed\"}")
                        && !l.ends_with(" 0")
                })
            })
        },
    );
    let status = producer.stop(libc::SIGTERM, Duration::from_secs(10), "producer", None);
    assert!(
        status.success(),
        "producer {status}:\n{}",
        read_log(&producer_log)
    );

    // A taken port is a clear error, exit 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = consume_cmd(&topic, &format!("{topic}-g2"), &d, true);
    cmd.args(["--http-addr", &format!("127.0.0.1:{port}")]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http-addr") && err.contains("cannot listen"),
        "{err}"
    );
}

/// Every `expr` of every panel target in a dashboard, with the panel's title.
fn expressions(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack: Vec<&serde_json::Value> = vec![dashboard];
    while let Some(v) = stack.pop() {
        if let Some(panels) = v["panels"].as_array() {
            stack.extend(panels.iter());
        }
        for t in v["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                out.push((
                    v["title"].as_str().unwrap_or("?").to_string(),
                    e.to_string(),
                ));
            }
        }
    }
    out
}

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = repo_root().join("grafana/dashboards");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 2, "dashboards in {}", dir.display());
    out
}

#[test]
fn a_real_prometheus_answers_every_dashboard_expression() {
    let d = dirs();
    let topic = unique_topic("prom");

    // A producer with every knob, fast enough on a simulated clock that windows close within
    // seconds; a consumer behind it. Each binds a port of the system's choosing and logs it.
    let mut cmd = produce_cmd(&topic, 3, 0, 3, 0);
    cmd.args(["--rate", "2000"])
        .env("LANDFALL_TXN_MAX_MS", "200");
    http_on_any_port(&mut cmd);
    let producer_log = log_stderr(&mut cmd, d.tmp.path(), "producer");
    let mut producer = ChildGuard::spawn(cmd);
    let producer_port = bound_port(&producer_log, Duration::from_secs(30));
    wait_for_status(producer_port, "/readyz", 200, Duration::from_secs(30));
    let mut cmd = consume_cmd(&topic, &format!("{topic}-g"), &d, false);
    http_on_any_port(&mut cmd);
    let consumer_log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let mut consumer = ChildGuard::spawn(cmd);
    let consumer_port = bound_port(&consumer_log, Duration::from_secs(30));
    wait_for_status(consumer_port, "/readyz", 200, Duration::from_secs(30));

    // The repository's scrape config, pointed at 127.0.0.1 and scraping every second.
    let config = std::fs::read_to_string(repo_root().join("prometheus/prometheus.yml"))
        .unwrap()
        .replace(
            "dns_sd_configs:\n      - names: [\"consumer\"]\n        type: A\n        port: 9464\n        refresh_interval: 15s",
            &format!("static_configs:\n      - targets: [\"127.0.0.1:{consumer_port}\"]"),
        )
        .replace("producer:9465", &format!("127.0.0.1:{producer_port}"))
        .replace("scrape_interval: 5s", "scrape_interval: 1s")
        .replace("scrape_timeout: 5s", "scrape_timeout: 1s");
    assert!(
        config.contains(&format!("127.0.0.1:{consumer_port}")),
        "{config}"
    );
    let mut prom = Prometheus::start(&config, d.tmp.path());
    let prom_port = prom.port;
    wait_until(
        "Prometheus to scrape both targets",
        Duration::from_secs(60),
        || query(prom_port, "up == 1").len() == 2,
    );
    // Rates over [1m] and quantiles over [5m] need a few samples of activity.
    std::thread::sleep(Duration::from_secs(20));

    let mut empty = Vec::new();
    let mut checked = 0;
    for (path, dash) in dashboards() {
        for (panel, expr) in expressions(&dash) {
            checked += 1;
            if query(prom_port, &expr).is_empty() {
                empty.push(format!("{} / {panel}: {expr}", path.display()));
            }
        }
    }
    let still_up = prom.running();
    for (name, c, log) in [
        ("producer", &mut producer, &producer_log),
        ("consumer", &mut consumer, &consumer_log),
    ] {
        let status = c.stop(libc::SIGTERM, Duration::from_secs(30), name, Some(log));
        assert!(status.success(), "the {name} exited with {status}");
    }
    assert!(still_up, "Prometheus died:\n{}", read_log(&prom.log));
    assert!(
        checked >= 20,
        "only {checked} expressions in the dashboards"
    );
    assert!(
        empty.is_empty(),
        "{} of {checked} dashboard expressions returned no series:\n{}",
        empty.len(),
        empty.join("\n")
    );
    eprintln!("{checked} dashboard expressions, each returned at least one series");
}

fn run_tool(cmd: &mut Command, dir: &Path) -> String {
    let out = cmd.current_dir(dir).output().expect("run tool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

#[test]
fn deployment_files_pass_their_own_tools() {
    let root = repo_root();
    let promtool = tool("LANDFALL_PROMTOOL", "promtool");
    run_tool(
        Command::new(promtool).args(["check", "config", "prometheus/prometheus.yml"]),
        &root,
    );
    let compose = tool("LANDFALL_DOCKER_COMPOSE", "docker-compose");
    let resolved = run_tool(
        Command::new(compose).args(["-f", "docker-compose.yaml", "config"]),
        &root,
    );
    for service in [
        "kafka:",
        "topic-init:",
        "producer:",
        "consumer:",
        "prometheus:",
        "grafana:",
    ] {
        assert!(
            resolved.contains(service),
            "no {service} service:\n{resolved}"
        );
    }

    // Dashboards: fixed, unique uids; every datasource is the provisioned one; no import
    // placeholders.
    let provisioning =
        std::fs::read_to_string(root.join("grafana/provisioning/datasources/prometheus.yaml"))
            .unwrap();
    let ds_uid = provisioning
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .map(|u| u.trim().trim_matches('"').to_string())
        .expect("a datasource uid in the provisioning");
    let mut uids = std::collections::BTreeSet::new();
    for (path, dash) in dashboards() {
        let uid = dash["uid"].as_str().unwrap_or_default().to_string();
        assert!(!uid.is_empty(), "{} has no uid", path.display());
        assert!(uids.insert(uid.clone()), "uid {uid} used twice");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("__inputs") && !text.contains("${DS_"),
            "{} has import placeholders",
            path.display()
        );
        let mut stack: Vec<&serde_json::Value> = vec![&dash];
        while let Some(v) = stack.pop() {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(ds) = m.get("datasource") {
                        assert_eq!(
                            ds["uid"].as_str(),
                            Some(ds_uid.as_str()),
                            "{}: datasource {ds} is not the provisioned {ds_uid}",
                            path.display()
                        );
                    }
                    stack.extend(m.values());
                }
                serde_json::Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
        }
    }
}
