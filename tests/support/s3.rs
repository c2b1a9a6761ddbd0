//! The S3-compatible server of `scripts/s3` (s3proxy with its filesystem store, a real server
//! on 127.0.0.1) and an independent client for it (`tests/s3_tools.py`: pyarrow and boto3),
//! for the object-store tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::harness::Dirs;
use super::*;

/// A running server and the environment its clients need (`scripts/s3 env`).
pub struct S3 {
    pub port: u16,
    pub bucket: String,
    pub env: Vec<(String, String)>,
    /// Set for a server this test started (stopped when dropped).
    own_home: Option<PathBuf>,
    auth: &'static str,
}

fn script(port: u16, home: Option<&Path>, auth: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(repo_root().join("scripts/s3"));
    cmd.args(args)
        .env("S3_PORT", port.to_string())
        .env("S3_AUTH", auth);
    if let Some(home) = home {
        cmd.env("S3_HOME_DIR", home);
    }
    cmd.output().expect("run scripts/s3")
}

impl S3 {
    /// The shared server on `S3_PORT` (9000), which `scripts/test` starts.
    pub fn shared() -> S3 {
        let port = std::env::var("S3_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9000);
        let status = script(port, None, "aws-v2-or-v4", &["status"]);
        assert!(
            status.status.success(),
            "no S3 server on 127.0.0.1:{port}: start it with `scripts/s3 start` (scripts/test \
             does)\n{}",
            String::from_utf8_lossy(&status.stderr)
        );
        S3::with_env(port, None, "aws-v2-or-v4")
    }

    /// A server of the test's own on `port`, with its data under `home`: for tests that stop
    /// it, or that need other settings (`auth`: `aws-v2-or-v4` or `none`).
    pub fn own(port: u16, home: &Path, auth: &'static str) -> S3 {
        let s3 = S3::with_env(port, Some(home.to_path_buf()), auth);
        s3.start();
        s3
    }

    fn with_env(port: u16, own_home: Option<PathBuf>, auth: &'static str) -> S3 {
        let out = script(port, own_home.as_deref(), auth, &["env"]);
        assert!(out.status.success(), "scripts/s3 env failed");
        let env: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['\'', '"']).to_string()))
            .collect();
        let bucket = env
            .iter()
            .find(|(k, _)| k == "S3_BUCKET")
            .map(|(_, v)| v.clone())
            .expect("scripts/s3 env names S3_BUCKET");
        S3 {
            port,
            bucket,
            env,
            own_home,
            auth,
        }
    }

    pub fn start(&self) {
        let out = script(self.port, self.own_home.as_deref(), self.auth, &["start"]);
        assert!(
            out.status.success(),
            "scripts/s3 start on port {}:\n{}",
            self.port,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = script(self.port, self.own_home.as_deref(), self.auth, &["stop"]);
        assert!(
            out.status.success(),
            "scripts/s3 stop on port {}",
            self.port
        );
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The report and rejects prefixes of `prefix`, with a local state directory.
    pub fn dirs(&self, prefix: &str) -> Dirs {
        let tmp = scratch();
        Dirs {
            report: PathBuf::from(self.url(&format!("{prefix}/report"))),
            rejects: PathBuf::from(self.url(&format!("{prefix}/rejects"))),
            state: tmp.path().join("state"),
            tmp,
        }
    }

    /// Gives `cmd` this server's endpoint, keys and region.
    pub fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// `tests/s3_tools.py ARGS` against this server; its stdout, or a panic with its stderr.
    pub fn tool(&self, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new(python());
        cmd.arg(repo_root().join("tests/s3_tools.py")).args(args);
        let out = self
            .apply(&mut cmd)
            .output()
            .expect("run tests/s3_tools.py");
        assert!(
            out.status.success(),
            "s3_tools.py {args:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// SHA-256 of every finalized Parquet file under a local directory or an s3:// prefix.
    pub fn digests(&self, location: &Path) -> BTreeMap<String, String> {
        serde_json::from_slice(&self.tool(&["digest", path_str(location)])).unwrap()
    }

    /// Every row of every finalized Parquet file, as pyarrow reads it (S3FileSystem for s3://).
    pub fn rows(&self, location: &Path) -> serde_json::Value {
        serde_json::from_slice(&self.tool(&["read", path_str(location)])).unwrap()
    }

    /// Every key under an s3:// prefix, relative to it.
    pub fn keys(&self, url: &str) -> Vec<String> {
        String::from_utf8(self.tool(&["keys", url]))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if self.own_home.is_some() {
            let _ = script(self.port, self.own_home.as_deref(), self.auth, &["stop"]);
        }
    }
}
