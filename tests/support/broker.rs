//! A broker of a test's own (`scripts/kafka` on its own port, optionally on its own host
//! address), and what a consumer's log says when it was cut off from its group.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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

/// Samples the group's committed offsets on the broker every 100 ms until stopped, and fails
/// the test if one ever moves back.
pub struct OffsetWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<u64, String>>>,
}

impl OffsetWatch {
    pub fn start(brokers: &str, group: &str, topic: &str, partitions: i32) -> Self {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset watch client");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition(topic, p);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = vec![-1i64; partitions as usize];
            let mut advances = 0;
            while !stopped.load(Ordering::Relaxed) {
                if let Ok(now) = c.committed_offsets(tpl.clone(), Duration::from_secs(5)) {
                    for e in now.elements() {
                        let (p, Offset::Offset(o)) = (e.partition() as usize, e.offset()) else {
                            continue;
                        };
                        if o < last[p] {
                            return Err(format!("partition {p}: committed {} then {o}", last[p]));
                        }
                        advances += u64::from(o > last[p]);
                        last[p] = o;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(advances)
        });
        OffsetWatch {
            stop,
            thread: Some(thread),
        }
    }

    /// How many times an offset moved forward; fails the test if one moved back.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join().expect("offset watch");
        r.unwrap_or_else(|e| panic!("a committed offset moved back: {e}"))
    }
}

impl Drop for OffsetWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
