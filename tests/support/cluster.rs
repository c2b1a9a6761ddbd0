//! The three-broker cluster of `KAFKA_BROKERS=3 scripts/kafka` (a controller and brokers 1 to
//! 3, replication factor 3, `min.insync.replicas=2`), for the tests that take brokers away.
//! One test at a time holds it ([`Cluster::take`]): a test kills brokers the others would need.

use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use super::{repo_root, wait_until};

pub struct Cluster {
    pub bootstrap: String,
}

static CLUSTER: OnceLock<Mutex<Cluster>> = OnceLock::new();

impl Cluster {
    /// Starts the cluster (or reuses it), restarts any broker an earlier test left down, waits
    /// until no partition is under-replicated, and points every `landfall` command of this test
    /// binary at it (see [`super::brokers`]).
    pub fn take() -> MutexGuard<'static, Cluster> {
        let lock = CLUSTER.get_or_init(|| {
            let bootstrap = script(&["start"]);
            super::use_brokers(&bootstrap);
            Mutex::new(Cluster { bootstrap })
        });
        let guard = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        script(&["start"]);
        guard.wait_isr();
        guard
    }

    /// kill -9 broker `n`; its data stays.
    pub fn kill(&self, n: u32) {
        eprintln!("cluster: kill -9 broker {n}");
        script(&["kill", &n.to_string()]);
    }

    /// Starts broker `n` and waits until it answers.
    pub fn start(&self, n: u32) {
        eprintln!("cluster: starting broker {n}");
        script(&["start", &n.to_string()]);
    }

    /// The node id of the leader of `topic`'s `partition`.
    pub fn leader(&self, topic: &str, partition: i32) -> u32 {
        node(&script(&["leader", topic, &partition.to_string()]))
    }

    /// The node id of the coordinator of a consumer group ("group") or a transactional id
    /// ("txn"), as the broker describes it; waits until it has one.
    pub fn coordinator(&self, kind: &str, id: &str) -> u32 {
        let mut found = None;
        wait_until(
            &format!("the coordinator of {kind} {id}"),
            Duration::from_secs(60),
            || {
                found = try_script(&["coordinator", kind, id]).map(|s| node(&s));
                found.is_some()
            },
        );
        found.unwrap()
    }

    /// Waits until every partition has its full replica set in sync.
    pub fn wait_isr(&self) {
        script(&["wait-isr", "120"]);
    }
}

fn node(s: &str) -> u32 {
    s.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a node id: {s:?}"))
}

fn try_script(args: &[&str]) -> Option<String> {
    let out = Command::new(repo_root().join("scripts/kafka"))
        .args(args)
        .env("KAFKA_BROKERS", "3")
        .env_remove("KAFKA_PORT")
        .env_remove("KAFKA_SECURITY")
        .env_remove("KAFKA_HOME_DIR")
        .output()
        .expect("run scripts/kafka");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_string())
        .or_else(|| {
            eprintln!(
                "KAFKA_BROKERS=3 scripts/kafka {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        })
}

fn script(args: &[&str]) -> String {
    try_script(args)
        .unwrap_or_else(|| panic!("KAFKA_BROKERS=3 scripts/kafka {} failed", args.join(" ")))
}
