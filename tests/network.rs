//! Network faults: a consumer cut off from the brokers while its process keeps running (a
//! real zombie), and a lossy, throttled link. Each test makes a network namespace joined to
//! this one by a veth pair, runs a broker of its own on the outer end, runs the faulty side
//! inside the namespace (`ip netns exec`), and breaks or degrades only that link. Each ends
//! byte-identical to a clean run with `landfall verify` clean.
//!
//! The kernel these tests were written on has no `sch_netem`, so latency and loss are made
//! without it: a TCP relay in this process that holds every chunk back for a while (the
//! namespace's connections to the broker are redirected to it with DNAT), iptables'
//! `statistic` match dropping packets at random, and a `tbf` bottleneck whose queue delays
//! packets further (and drops them when it overflows). The tests need root (CAP_NET_ADMIN),
//! `ip`, `tc` and `iptables`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use support::broker::*;
use support::harness::*;
use support::netns::*;
use support::output::*;
use support::*;

/// One instance of the consumer group on `broker`, streaming: its own state store, the shared
/// output, run inside `ns` when given. Returns the child and its log.
fn spawn_instance(
    broker: &OwnBroker,
    ns: Option<&NetNs>,
    (topic, group): (&str, &str),
    d: &Dirs,
    instance: &str,
) -> (ChildGuard, PathBuf) {
    let mut cmd = broker.cmd(consume_cmd(topic, group, d, false));
    cmd.env("LANDFALL_INSTANCE_ID", instance)
        .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600")
        .env(
            "LANDFALL_STATE_DIR",
            d.tmp.path().join(format!("state-{instance}")),
        )
        .env("LANDFALL_LOG", "info");
    let mut cmd = match ns {
        Some(ns) => ns.wrap(&cmd),
        None => cmd,
    };
    let log = log_stderr(&mut cmd, d.tmp.path(), instance);
    (ChildGuard::spawn(cmd), log)
}

/// Waits until `find` holds for `log` (without colours), failing after `timeout`.
fn wait_for_log(log: &Path, what: &str, timeout: Duration, find: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    while !find(&strip_ansi(&read_log(log))) {
        assert!(
            Instant::now() < deadline,
            "no sign of {what} within {timeout:?}; the log ends:\n{}",
            log_tail(log, 40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The end of every fault test: with the fault gone and every session expired, a last run to
/// the end (as instance `instance`) completes the output, which is byte-identical to a clean
/// run on the same broker, and `verify` finds nothing wrong and nothing pending.
fn finish_clean(
    broker: &OwnBroker,
    (topic, group): (&str, &str),
    d: &Dirs,
    instance: &str,
    mut ledger: Ledger,
) {
    // Static members do not leave the group when they stop: let their sessions expire, so
    // the last run gets every partition.
    wait_for_group_members_on(
        &broker.brokers(),
        group,
        "every session to expire",
        Duration::from_secs(60),
        |g| g.members.is_empty(),
    );
    ledger.restarts += 1;
    let mut cmd = broker.cmd(consume_cmd(topic, group, d, true));
    cmd.env("LANDFALL_INSTANCE_ID", instance).env(
        "LANDFALL_STATE_DIR",
        d.tmp.path().join(format!("state-{instance}")),
    );
    run_ok(cmd);
    let clean = dirs();
    run_ok(broker.cmd(consume_cmd(topic, &format!("{topic}-clean"), &clean, true)));
    assert_same_output(&clean, d);
    let v = verify_dirs(&broker.brokers(), topic, Some(group), &d.report, &d.rejects);
    let v = assert_no_discrepancy(v, &mut ledger);
    assert_eq!(v.int("pending_records"), 0, "{}", v.report);
    ledger.book();
}

/// The group `(topic, group)` on a broker of the test's own.
struct Run<'a> {
    broker: &'a OwnBroker,
    topic: &'a str,
    group: &'a str,
    d: &'a Dirs,
}

impl Run<'_> {
    fn members(&self, what: &str, pred: impl FnMut(&GroupState) -> bool) -> GroupState {
        let on = self.broker.brokers();
        wait_for_group_members_on(&on, self.group, what, Duration::from_secs(60), pred)
    }

    /// Batch `batch` (1, 2, ...): 40,000 golden records on 4 partitions, seeded with the batch
    /// number, dated after the batch before.
    fn produce_cmd(&self, batch: u64) -> Command {
        let offset = sim_secs(40_000 * (batch - 1));
        self.broker
            .cmd(produce_cmd(self.topic, 4, 40_000, batch, offset))
    }

    fn produce(&self, batch: u64) {
        run_ok(self.produce_cmd(batch));
    }

    fn spawn(&self, ns: Option<&NetNs>, instance: &str) -> (ChildGuard, PathBuf) {
        spawn_instance(self.broker, ns, (self.topic, self.group), self.d, instance)
    }
}

#[test]
fn a_consumer_cut_off_from_the_brokers_lands_nothing_it_lost_and_rejoins() {
    let mut ledger = Ledger::new("net_partition");
    let ns = NetNs::new("part", "10.213.0");
    let broker = OwnBroker::fresh_on(&ns.host, 40);
    broker.script("start");
    let topic = unique_topic("netcut");
    let group = format!("{topic}-g");
    let d = dirs();
    let run = Run {
        broker: &broker,
        topic: &topic,
        group: &group,
        d: &d,
    };
    run.produce(1);
    let offsets = OffsetWatch::start(&broker.brokers(), &group, &topic, 4);

    // A runs inside the namespace, alone at first.
    let (mut a, a_log) = run.spawn(Some(&ns), "a");
    wait_until("A to land windows", Duration::from_secs(60), || {
        window_file_count(&d) >= 20
    });
    assert_inside(&ns, a.child().id());
    let a_member = run.members("A alone", |g| g.stable_with(1)).members[0].clone();

    let landed_by_a = tree_bytes(&d.report);
    let (mut b, b_log) = cut_off_past_the_session(&run, &ns, (&mut a, &a_log), &a_member);
    ledger.faults += 1;

    // Healed, A finds its partitions gone, and rejoins as a new member.
    run.produce(3);
    // A's log says it could not reach the broker (librdkafka timed out a request and could not
    // reconnect): only a cut link gives "Network is unreachable". librdkafka's lines reach the
    // log when A's main thread polls, which it may not do while a synchronous commit waits on
    // the cut link, so this may only show once healed.
    let on = broker.brokers();
    let failed = format!("Failed to connect to broker at {on}: Network is unreachable");
    wait_for_log(
        &a_log,
        "A failing to reach the broker",
        Duration::from_secs(60),
        |l| l.contains(&failed),
    );
    wait_for_log(
        &a_log,
        "A noticing it lost its partitions",
        Duration::from_secs(60),
        |l| !lost_partitions_evidence(l).is_empty(),
    );
    eprintln!(
        "A lost its partitions:\n{}",
        lost_partitions_evidence(&strip_ansi(&read_log(&a_log))).join("\n")
    );
    run.members("A to rejoin", |g| {
        g.stable_with(2) && !g.members.contains(&a_member)
    });
    for (c, log, name) in [(&mut a, &a_log, "A"), (&mut b, &b_log, "B")] {
        let status = c.stop(libc::SIGTERM, Duration::from_secs(30), name, Some(log));
        assert!(
            status.success(),
            "{name} exit {status}:\n{}",
            log_tail(log, 40)
        );
    }
    // Nothing that had landed changed; no committed offset ever moved back.
    let now = tree_bytes(&d.report);
    for (name, bytes) in &landed_by_a {
        assert!(
            now.get(name) == Some(bytes),
            "{name:?} was changed or removed"
        );
    }
    let advances = offsets.finish();
    assert!(advances > 0, "the offset watch saw no commit at all");
    finish_clean(&broker, (&topic, &group), &d, "a", ledger);
}

/// Process `pid` is the consumer (`ip netns exec` exec'd it) and runs inside `ns`.
fn assert_inside(ns: &NetNs, pid: u32) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, landfall_bin().canonicalize().unwrap(), "pid {pid}");
    let inside = sh("ip", &["netns", "identify", &pid.to_string()]);
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        ns.name,
        "pid {pid}"
    );
}

/// Cuts A (running in `ns`) off from the broker, while B (started here, outside) takes over
/// and lands windows, for longer than the session timeout: until the broker has dropped A
/// from the group and at least 20 s have passed.
/// A's process stays alive throughout. Then heals the link. Returns B.
fn cut_off_past_the_session(
    run: &Run,
    ns: &NetNs,
    (a, a_log): (&mut ChildGuard, &Path),
    a_member: &str,
) -> (ChildGuard, PathBuf) {
    let on = run.broker.brokers();
    ns.exec(&["ip", "link", "set", &ns.inner, "down"]);
    let cut = Instant::now();
    assert!(!ns.reaches(&on), "the namespace still reaches {on}");
    assert!(reaches_from_here(&on), "the root namespace lost {on} too");
    let landed = window_file_count(run.d);
    let (b, b_log) = run.spawn(None, "b");
    run.produce(2);
    wait_until(
        "B to take over and land windows",
        Duration::from_secs(90),
        || window_file_count(run.d) >= landed + 20,
    );
    run.members("A's session to expire", |g| {
        g.stable_with(1) && !g.members.iter().any(|m| m == a_member)
    });
    while cut.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A zombie, not a corpse.
    assert!(
        a.child().try_wait().unwrap().is_none(),
        "A exited during the cut:\n{}",
        log_tail(a_log, 40)
    );
    ns.exec(&["ip", "link", "set", &ns.inner, "up"]);
    eprintln!("A was cut off for {:?}", cut.elapsed());
    assert!(ns.reaches(&on), "healed, the namespace does not reach {on}");
    assert!(
        read_log(&b_log).contains("partitions assigned"),
        "B got nothing"
    );
    (b, b_log)
}

#[test]
fn a_lossy_throttled_link_loses_nothing() {
    let mut ledger = Ledger::new("net_degraded");
    let ns = NetNs::new("slow", "10.213.1");
    let broker = OwnBroker::fresh_on(&ns.host, 41);
    broker.script("start");
    let topic = unique_topic("netslow");
    let group = format!("{topic}-g");
    let d = dirs();
    let run = Run {
        broker: &broker,
        topic: &topic,
        group: &group,
        d: &d,
    };
    run.produce(1);
    let offsets = OffsetWatch::start(&broker.brokers(), &group, &topic, 4);
    // Every connection from the namespace to the broker goes through a relay here, which
    // adds no delay until the link is degraded.
    let to_broker = broker.brokers().parse().unwrap();
    let relay = DelayRelay::start(&format!("{}:0", ns.host), to_broker);
    ns.redirect(&broker.brokers(), relay.addr);
    let (mut c, c_log) = run.spawn(Some(&ns), "c");
    wait_until("C to land windows", Duration::from_secs(60), || {
        window_file_count(&d) >= 10
    });
    assert_inside(&ns, c.child().id());
    assert!(
        relay.bytes.load(Relaxed) > 0,
        "C's connections bypass the relay"
    );

    // Degraded for a while: the consumer reads, and a producer inside the namespace writes
    // the second batch, through the lossy, throttled link.
    let degraded = Degraded::start(&ns, &relay);
    ledger.faults += 3; // latency, loss, a bottleneck
    let started = Instant::now();
    let landed = window_file_count(&d);
    run_ok(ns.wrap(&run.produce_cmd(2)));
    eprintln!("the producer in the namespace took {:?}", started.elapsed());
    // A TCP stream that loses 5% of its packets each way backs off hard: give it time, and
    // say what C was doing if it still lands nothing.
    let waiting = Instant::now();
    while window_file_count(&d) < landed + 20 {
        assert!(
            waiting.elapsed() < Duration::from_secs(180),
            "C landed {} windows of the second batch in 180 s on the degraded link; its log \
             ends:\n{}",
            window_file_count(&d) - landed,
            log_tail(&c_log, 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "C landed the second batch {:?} after the producer",
        waiting.elapsed()
    );
    while started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        c.child().try_wait().unwrap().is_none(),
        "C exited on the degraded link:\n{}",
        log_tail(&c_log, 40)
    );
    degraded.stop_and_check();
    eprintln!("degraded for {:?}", started.elapsed());

    run.produce(3);
    wait_until(
        "C to land windows of the third batch",
        Duration::from_secs(60),
        || window_file_count(&d) >= landed + 40,
    );
    let status = c.stop(libc::SIGTERM, Duration::from_secs(30), "C", Some(&c_log));
    assert!(
        status.success(),
        "C exit {status}:\n{}",
        log_tail(&c_log, 40)
    );
    assert!(
        offsets.finish() > 0,
        "the offset watch saw no commit at all"
    );
    finish_clean(&broker, (&topic, &group), &d, "c", ledger);
}

/// The namespace's link, degraded: 25 ms more latency each way (the relay), 5% of the
/// packets dropped at random each way (iptables' `statistic` match), and a token-bucket
/// bottleneck each way (`tbf`: 8 Mbit/s towards the namespace, 2 Mbit/s out of it), whose
/// queue delays packets up to 100 ms more and drops what would wait longer.
struct Degraded<'a> {
    ns: &'a NetNs,
    relay: &'a DelayRelay,
}

impl<'a> Degraded<'a> {
    fn start(ns: &'a NetNs, relay: &'a DelayRelay) -> Self {
        relay.set_delay(Duration::from_millis(25));
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            ns.exec(&[
                "iptables",
                "-A",
                chain,
                dir,
                &ns.inner,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                "0.05",
                "-j",
                "DROP",
            ]);
        }
        fn tbf(rate: &str) -> [&str; 8] {
            [
                "root", "tbf", "rate", rate, "burst", "32kb", "latency", "100ms",
            ]
        }
        ns.exec(&[&["tc", "qdisc", "add", "dev", &ns.inner][..], &tbf("2mbit")].concat());
        sh(
            "tc",
            &[&["qdisc", "add", "dev", &ns.outer][..], &tbf("8mbit")].concat(),
        );
        Degraded { ns, relay }
    }

    /// Restores the link, failing the test unless every fault really acted: each iptables
    /// rule dropped packets, and each bottleneck held some back.
    fn stop_and_check(self) {
        let ns = self.ns;
        let delayed = self.relay.delayed.load(Relaxed);
        eprintln!("the relay held back {delayed} chunks for 25 ms");
        assert!(
            delayed > 0,
            "no traffic went through the relay while it added latency"
        );
        self.relay.set_delay(Duration::ZERO);
        for chain in ["INPUT", "OUTPUT"] {
            let out = ns.exec(&["iptables", "-L", chain, "-v", "-x", "-n"]);
            let listing = String::from_utf8_lossy(&out.stdout).into_owned();
            let dropped: u64 = listing
                .lines()
                .find(|l| l.contains("DROP") && l.contains("statistic"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no DROP rule in {chain}:\n{listing}"));
            eprintln!("{chain}: {dropped} packets dropped at random");
            assert!(dropped > 0, "the {chain} rule dropped nothing:\n{listing}");
        }
        let inner = ns.exec(&["tc", "-s", "qdisc", "show", "dev", &ns.inner]);
        let outer = sh("tc", &["-s", "qdisc", "show", "dev", &ns.outer]);
        for (side, out) in [("out of", inner), ("into", outer)] {
            let stats = String::from_utf8_lossy(&out.stdout).into_owned();
            let overlimits: u64 = stats
                .split_once("overlimits ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no tbf statistics:\n{stats}"));
            eprintln!(
                "the bottleneck {side} the namespace: {}",
                stats.replace('\n', " ")
            );
            assert!(
                overlimits > 0,
                "the bottleneck {side} the namespace held nothing back"
            );
        }
        ns.exec(&["iptables", "-F"]);
        ns.exec(&["tc", "qdisc", "del", "dev", &ns.inner, "root"]);
        sh("tc", &["qdisc", "del", "dev", &ns.outer, "root"]);
    }
}

/// The offset watch is a real check: it sees an offset committed back.
#[test]
fn the_offset_watch_sees_an_offset_moved_back() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let topic = unique_topic("watchback");
    create_topic(&topic, 1);
    let group = format!("{topic}-g");
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    let commit = |offset| {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Offset(offset))
            .unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
    };
    commit(100);
    let watch = OffsetWatch::start(&brokers(), &group, &topic, 1);
    std::thread::sleep(Duration::from_secs(2));
    commit(50);
    std::thread::sleep(Duration::from_secs(2));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| watch.finish()));
    let why = caught.expect_err("the watch missed 100 -> 50");
    let why = why.downcast_ref::<String>().unwrap();
    assert!(why.contains("committed 100 then 50"), "{why}");
}
