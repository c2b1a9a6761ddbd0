//! A real Prometheus (Debian's, which `scripts/test` installs) for the tests that scrape the
//! real binaries, and its instant-query API.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::harness::{log_stderr, wait_exit};
use super::*;

/// A tool on PATH, or the one `env` names; a panic naming how to get it.
pub fn tool(env: &str, name: &str) -> PathBuf {
    let path = std::env::var(env)
        .map(PathBuf::from)
        .unwrap_or_else(|_| name.into());
    let found = Command::new(&path).arg("--version").output().is_ok();
    assert!(
        found,
        "{name} is not installed (scripts/test installs it with apt-get; or set {env})"
    );
    path
}

/// A running Prometheus with a config of the test's, on a port of the system's choosing.
pub struct Prometheus {
    pub port: u16,
    pub log: PathBuf,
    child: ChildGuard,
}

impl Prometheus {
    /// Starts Prometheus with `config` (YAML text), its files under `dir`, and waits until it
    /// is ready.
    pub fn start(config: &str, dir: &Path) -> Prometheus {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(tool("LANDFALL_PROMETHEUS", "prometheus"));
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg("--web.listen-address=127.0.0.1:0");
        let log = log_stderr(&mut cmd, dir, "prometheus");
        let child = ChildGuard::spawn(cmd);
        // Prometheus binds port 0 too, and logs `msg="Listening on" address=127.0.0.1:NNNNN`.
        let port = logged_port(
            &log,
            "msg=\"Listening on\"",
            "address=",
            Duration::from_secs(60),
        );
        wait_until("Prometheus ready", Duration::from_secs(60), || {
            http_get(port, "/-/ready").is_some_and(|(s, _)| s == 200)
        });
        Prometheus { port, log, child }
    }

    pub fn running(&mut self) -> bool {
        self.child.child().try_wait().unwrap().is_none()
    }

    pub fn stop(mut self) {
        super::harness::send_signal(self.child.child(), libc::SIGTERM);
        wait_exit(self.child.child(), Duration::from_secs(30), "prometheus");
        self.child.0 = None;
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Series returned by an instant query.
pub fn query(port: u16, promql: &str) -> Vec<serde_json::Value> {
    let (status, body) = http_get(
        port,
        &format!("/api/v1/query?query={}", percent_encode(promql)),
    )
    .unwrap_or_else(|| panic!("Prometheus on {port} did not answer"));
    let body = dechunk(&body);
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("query {promql}: status {status}, {e}: {body}"));
    assert_eq!(v["status"], "success", "query {promql}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Undoes HTTP/1.1 chunked transfer encoding if the body is chunked.
fn dechunk(body: &str) -> String {
    let first = body.lines().next().unwrap_or("");
    if first.is_empty() || !first.chars().all(|c| c.is_ascii_hexdigit()) {
        return body.to_string();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}
