//! A broker of a test's own (`scripts/kafka` on its own port, optionally on its own host
//! address), and what a consumer's log says when it was cut off from its group.
#![allow(dead_code)]

use std::process::Command;

use super::repo_root;

/// A broker of this test's own, on its own port, so it can be stopped without disturbing the
/// other tests. Reset (stopped, its home removed) when it is created and when it is dropped.
pub struct OwnBroker {
    pub host: String,
    pub port: u16,
}

impl OwnBroker {
    /// On 127.0.0.1, port `KAFKA_PORT` (default 9092) + `offset`.
    pub fn fresh(offset: u16) -> Self {
        Self::fresh_on("127.0.0.1", offset)
    }

    /// Listening on, and advertising, `host` (an address of this machine, such as one end of
    /// a veth pair).
    pub fn fresh_on(host: &str, offset: u16) -> Self {
        let base: u16 = std::env::var("KAFKA_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(9092);
        let b = OwnBroker {
            host: host.to_string(),
            port: base + offset,
        };
        b.script("reset");
        b
    }

    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn script(&self, what: &str) {
        let out = Command::new(repo_root().join("scripts/kafka"))
            .arg(what)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_HOST", &self.host)
            .env_remove("KAFKA_CONTROLLER_PORT")
            .env_remove("KAFKA_SECURITY")
            .env_remove("KAFKA_HOME_DIR")
            .output()
            .expect("run scripts/kafka");
        assert!(
            out.status.success(),
            "scripts/kafka {what} on {} failed:\n{}",
            self.brokers(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command that talks to this broker.
    pub fn cmd(&self, mut cmd: Command) -> Command {
        cmd.env("LANDFALL_BROKERS", self.brokers());
        cmd
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.script("reset");
    }
}

/// The lines of a consumer's log that show it found its partitions gone: the rebalance saw
/// its assignment lost, or the broker refused its commit because it was no longer a member of
/// the group. (Not an illegal generation: a member that merely missed a rebalance, stopped
/// for 2 s while another joined, has its commit refused with that too.)
pub fn lost_partitions_evidence(log: &str) -> Vec<&str> {
    const REFUSED: [&str; 3] = ["Unknown member", "fenced", "Assignment lost"];
    log.lines()
        .filter(|l| {
            l.contains("assignment lost; not committing for these partitions")
                || ((l.contains("offset commit failed; retrying at the next checkpoint")
                    || l.contains("commit on revoke failed"))
                    && REFUSED.iter().any(|r| l.contains(r)))
        })
        .collect()
}
