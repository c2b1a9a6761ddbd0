//! Scale-out: several `landfall consume` instances in one group (cooperative-sticky), each with
//! its own state directory, one output directory. Instances are added, stopped, killed -9 and
//! frozen (SIGSTOP past the session timeout, so they wake up as zombies) while records are
//! produced. Throughout, no landed file may change and no committed offset may move backwards;
//! at the end `verify` is clean and the output is byte-identical to one uninterrupted instance.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use support::harness::*;
use support::output::*;
use support::*;

/// The group's instances, by slot name.
struct Fleet<'a> {
    topic: &'a str,
    group: &'a str,
    d: &'a Dirs,
    running: BTreeMap<String, (ChildGuard, PathBuf)>,
    /// Frozen instances: when, and at which churn action.
    frozen: BTreeMap<String, (Instant, usize)>,
    spawned: usize,
}

impl<'a> Fleet<'a> {
    fn new(topic: &'a str, group: &'a str, d: &'a Dirs) -> Self {
        Fleet {
            topic,
            group,
            d,
            running: BTreeMap::new(),
            frozen: BTreeMap::new(),
            spawned: 0,
        }
    }

    /// A new instance. Slots are reused after a kill, so a restarted instance finds its own
    /// state directory (possibly stale, since its partitions moved meanwhile). Dynamic
    /// membership: an instance that stops leaves the group at once.
    fn add(&mut self, slot: usize) -> String {
        let name = format!("i{slot}");
        let mut cmd = consume_cmd(self.topic, self.group, self.d, false);
        cmd.env("LANDFALL_INSTANCE_ID", "")
            .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600")
            .env(
                "LANDFALL_STATE_DIR",
                self.d.tmp.path().join(format!("state-{name}")),
            );
        self.spawned += 1;
        let log = log_stderr(
            &mut cmd,
            self.d.tmp.path(),
            &format!("{name}-{}", self.spawned),
        );
        self.running
            .insert(name.clone(), (ChildGuard::spawn(cmd), log));
        name
    }

    fn free_slot(&self) -> usize {
        (0..)
            .find(|s| !self.running.contains_key(&format!("i{s}")))
            .unwrap()
    }

    /// SIGTERM: the instance commits what it landed and leaves; it must exit 0.
    fn stop(&mut self, name: &str) {
        self.thaw(name);
        let (mut c, log) = self.running.remove(name).unwrap();
        let status = c.stop(libc::SIGTERM, Duration::from_secs(60), name, Some(&log));
        assert!(
            status.success(),
            "{name} exit {status}:\n{}",
            read_log(&log)
        );
    }

    fn kill9(&mut self, name: &str) {
        self.frozen.remove(name);
        let (mut c, _) = self.running.remove(name).unwrap();
        c.kill9();
    }

    fn freeze(&mut self, name: &str, action: usize) {
        send_signal(self.running[name].0 .0.as_ref().unwrap(), libc::SIGSTOP);
        self.frozen
            .insert(name.to_string(), (Instant::now(), action));
    }

    fn thaw(&mut self, name: &str) {
        if self.frozen.remove(name).is_some() {
            send_signal(self.running[name].0 .0.as_ref().unwrap(), libc::SIGCONT);
        }
    }

    /// Wakes the instances frozen at least `actions` churn actions before `action`, once
    /// each has been frozen for `at_least` (waiting out the rest if need be). Counting actions
    /// rather than seconds keeps the schedule a function of the seed alone.
    fn thaw_due(&mut self, action: usize, actions: usize, at_least: Duration) {
        let due: Vec<(String, Instant)> = self
            .frozen
            .iter()
            .filter(|(_, (_, a))| action >= a + actions)
            .map(|(n, (t, _))| (n.clone(), *t))
            .collect();
        for (n, t) in due {
            std::thread::sleep(at_least.saturating_sub(t.elapsed()));
            self.thaw(&n);
        }
    }

    /// A running instance that is not frozen, at random.
    fn pick(&self, rng: &mut impl rand::Rng) -> Option<String> {
        let live: Vec<&String> = self
            .running
            .keys()
            .filter(|n| !self.frozen.contains_key(*n))
            .collect();
        (!live.is_empty()).then(|| live[rng.random_range(0..live.len())].clone())
    }

    /// Any instance that died on its own is a failure.
    fn assert_alive(&mut self) {
        for (name, (c, log)) in &mut self.running {
            if let Some(status) = c.child().try_wait().unwrap() {
                panic!("{name} exited on its own ({status}):\n{}", read_log(log));
            }
        }
    }

    fn stop_all(&mut self) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
    }
}

/// What must hold at every moment: landed files never change, committed offsets never move
/// backwards.
struct Watch {
    files: BTreeMap<PathBuf, Vec<u8>>,
    committed: BTreeMap<i32, i64>,
    checks: u64,
}

impl Watch {
    fn new() -> Self {
        Watch {
            files: BTreeMap::new(),
            committed: BTreeMap::new(),
            checks: 0,
        }
    }

    fn check(&mut self, topic: &str, group: &str, d: &Dirs) {
        self.checks += 1;
        for (name, bytes) in tree_bytes(&d.report) {
            match self.files.get(&name) {
                Some(seen) => assert!(*seen == bytes, "{name:?} changed after it had landed"),
                None => {
                    self.files.insert(name, bytes);
                }
            }
        }
        let now = landfall::ops::kafka::committed_offsets(&settings(topic), group)
            .expect("reading the group's committed offsets");
        for (p, c) in now {
            let Some((offset, _)) = c else { continue };
            let before = self.committed.insert(p, offset);
            assert!(
                before.is_none_or(|b| offset >= b),
                "partition {p}: the committed offset moved backwards, from {before:?} to {offset}"
            );
        }
    }
}

/// One last instance lands what the others left open; then the output must equal one
/// uninterrupted instance's, byte for byte, and `verify` must be clean.
fn finish(topic: &str, group: &str, d: &Dirs, watch: &mut Watch, ledger: &mut Ledger) {
    ledger.restarts += 1;
    let mut last = consume_cmd(topic, group, d, true);
    last.env("LANDFALL_INSTANCE_ID", "")
        .env("LANDFALL_STATE_DIR", d.tmp.path().join("state-i0"));
    run_ok(last);
    watch.check(topic, group, d);
    assert_same_output(&clean_run(topic), d);
    assert_verified(topic, Some(group), d, ledger);
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Churn {
    Add,
    Stop,
    Kill,
    Freeze,
}

#[test]
fn churn_with_three_instances_matches_one_uninterrupted_instance() {
    let mut ledger = Ledger::new("scale_churn");
    let topic = unique_topic("churn");
    let group = format!("{topic}-g");
    let d = dirs();
    const CHUNKS: u64 = 13;
    const PER_CHUNK: u64 = 32_000;
    const ACTIONS: usize = 24;
    let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
    let mut watch = Watch::new();
    let mut fleet = Fleet::new(&topic, &group, &d);
    run_ok(produce_cmd(&topic, 6, PER_CHUNK, 1, 0));
    for _ in 0..3 {
        let slot = fleet.free_slot();
        fleet.add(slot);
    }
    let mut produced = 1;
    let mut log = Vec::new();
    // The kinds of action, shuffled by the seed; what happens depends on the seed alone,
    // never on how fast the machine is.
    let mut deck: Vec<Churn> = [
        (Churn::Stop, 5),
        (Churn::Kill, 4),
        (Churn::Freeze, 4),
        (Churn::Add, ACTIONS - 13),
    ]
    .into_iter()
    .flat_map(|(k, n)| std::iter::repeat_n(k, n))
    .collect();
    deck.shuffle(&mut rng);
    for action in 0..ACTIONS {
        // Records keep arriving during the churn: a chunk every other action.
        if action % 2 == 1 && produced < CHUNKS {
            let offset = sim_secs(produced * PER_CHUNK);
            run_ok(produce_cmd(&topic, 6, PER_CHUNK, 1 + produced, offset));
            produced += 1;
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(1000..2500)));
        fleet.thaw_due(action, 5, Duration::from_secs(12));
        fleet.assert_alive();
        watch.check(&topic, &group, &d);
        let live = fleet.running.len() - fleet.frozen.len();
        // The next kind in the deck that the fleet allows: removing needs a live instance
        // and at least two running; adding needs a free slot below four.
        let allowed = |k: &Churn| match k {
            Churn::Add => fleet.running.len() < 4,
            _ => live > 0 && fleet.running.len() >= 2,
        };
        let kind = match deck.iter().position(allowed) {
            Some(i) => deck.remove(i),
            None => Churn::Add,
        };
        ledger.faults += 1;
        match (kind, fleet.pick(&mut rng)) {
            (Churn::Stop, Some(n)) => {
                fleet.stop(&n);
                log.push(format!("stop {n}"));
            }
            (Churn::Kill, Some(n)) => {
                fleet.kill9(&n);
                ledger.kills += 1;
                log.push(format!("kill -9 {n}"));
            }
            (Churn::Freeze, Some(n)) => {
                // Frozen past the session timeout (10 s): it wakes up as a zombie.
                fleet.freeze(&n, action);
                log.push(format!("SIGSTOP {n}"));
            }
            _ => {
                let slot = fleet.free_slot();
                let n = fleet.add(slot);
                ledger.restarts += 1;
                log.push(format!("add {n}"));
            }
        }
    }
    while produced < CHUNKS {
        run_ok(produce_cmd(
            &topic,
            6,
            PER_CHUNK,
            1 + produced,
            sim_secs(produced * PER_CHUNK),
        ));
        produced += 1;
    }
    for n in fleet.frozen.keys().cloned().collect::<Vec<_>>() {
        fleet.thaw(&n);
    }
    // The group settles with exactly the running instances: the thawed ones have rejoined
    // (as new members if they had become zombies), the killed ones' sessions have expired.
    let running = fleet.running.len();
    wait_for_group_members(
        &group,
        "the group to settle with the running instances",
        Duration::from_secs(60),
        |g| g.stable_with(running),
    );
    fleet.assert_alive();
    watch.check(&topic, &group, &d);
    fleet.stop_all();
    watch.check(&topic, &group, &d);
    eprintln!("churn: {}", log.join(", "));
    assert!(
        log.iter().filter(|a| a.starts_with("kill")).count() >= 3
            && log.iter().filter(|a| a.starts_with("SIGSTOP")).count() >= 3
            && log.iter().filter(|a| a.starts_with("stop")).count() >= 3,
        "the seeded churn should stop, kill and freeze at least 3 times each: {log:?}"
    );

    // Killed members stay in the group until their session times out (10 s), stopped ones
    // leave at once; once the group is empty, one last instance gets every partition and
    // lands what the others left open.
    wait_for_group_members(&group, "the group to empty", Duration::from_secs(60), |g| {
        g.members.is_empty()
    });
    finish(&topic, &group, &d, &mut watch, &mut ledger);
    eprintln!(
        "churn: {} actions, {} invariant checks, {} files",
        ACTIONS,
        watch.checks,
        watch.files.len()
    );
    ledger.book();
}

#[test]
fn a_rebalance_storm_still_makes_progress() {
    let mut ledger = Ledger::new("scale_storm");
    let topic = unique_topic("storm");
    let group = format!("{topic}-g");
    let d = dirs();
    let mut watch = Watch::new();
    run_ok(produce_cmd(&topic, 6, 20_000, 1, 0));
    // A producer runs through the whole storm, 4,000 records a second.
    let mut producer = produce_cmd(&topic, 6, 160_000, 2, sim_secs(20_000));
    producer.args(["--rate", "4000"]);
    let plog = log_stderr(&mut producer, d.tmp.path(), "producer");
    let mut producer = ChildGuard::spawn(producer);
    let mut fleet = Fleet::new(&topic, &group, &d);
    fleet.add(0);
    let started = Instant::now();
    let mut landed = vec![(0.0, window_file_count(&d))];
    let mut turn = 0;
    // Every 2 s one instance joins or leaves, between 1 and 3 of them, for 36 s.
    while started.elapsed() < Duration::from_secs(36) {
        std::thread::sleep(Duration::from_secs(2));
        fleet.assert_alive();
        if turn % 3 == 2 || fleet.running.len() >= 3 {
            let oldest = fleet.running.keys().next().cloned().unwrap();
            fleet.stop(&oldest);
        } else {
            let slot = fleet.free_slot();
            fleet.add(slot);
        }
        if fleet.running.is_empty() {
            fleet.add(fleet.free_slot());
        }
        turn += 1;
        ledger.faults += 1;
        watch.check(&topic, &group, &d);
        landed.push((started.elapsed().as_secs_f64(), window_file_count(&d)));
    }
    eprintln!("storm: {turn} joins and leaves; window files landed over time: {landed:?}");
    // Progress in every third of the storm, not just at the end.
    let n = landed.len() - 1;
    for (a, b) in [(0, n / 3), (n / 3, 2 * n / 3), (2 * n / 3, n)] {
        assert!(
            landed[b].1 > landed[a].1,
            "no window landed between {:.0} s and {:.0} s of the storm: {landed:?}",
            landed[a].0,
            landed[b].0
        );
    }
    let status = wait_exit(producer.child(), Duration::from_secs(120), "producer");
    producer.0 = None;
    assert!(status.success(), "producer: {}", read_log(&plog));
    fleet.stop_all();
    finish(&topic, &group, &d, &mut watch, &mut ledger);
    ledger.book();
}
