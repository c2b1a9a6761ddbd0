//! A network namespace joined to this one by a veth pair, for cutting and degrading one
//! process's network (tests/network.rs). Needs root (CAP_NET_ADMIN), `ip`, `tc` and `iptables`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Runs a command, failing the test with its output unless it succeeds.
pub fn sh(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e} (these tests need ip, tc and iptables)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed (these tests need root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace joined to this one by a veth pair on a /30: `host` (`.1`, the outer
/// end, here) and `.2` (the inner end, in the namespace). Deleting the namespace, on drop
/// (also after a panic), deletes both ends.
pub struct NetNs {
    pub name: String,
    pub outer: String,
    pub inner: String,
    pub host: String,
}

impl NetNs {
    /// `net` is the first three octets, such as "10.213.0"; `tag` makes the names.
    pub fn new(tag: &str, net: &str) -> Self {
        let ns = NetNs {
            name: format!("landfall-{tag}"),
            outer: format!("lf{tag}0"),
            inner: format!("lf{tag}1"),
            host: format!("{net}.1"),
        };
        ns.remove(); // leftovers of a run that was killed
        sh("ip", &["netns", "add", &ns.name]);
        let (outer, inner) = (ns.outer.as_str(), ns.inner.as_str());
        sh(
            "ip",
            &["link", "add", outer, "type", "veth", "peer", "name", inner],
        );
        sh("ip", &["link", "set", inner, "netns", &ns.name]);
        sh(
            "ip",
            &["addr", "add", &format!("{}/30", ns.host), "dev", outer],
        );
        sh("ip", &["link", "set", outer, "up"]);
        ns.exec(&["ip", "addr", "add", &format!("{net}.2/30"), "dev", inner]);
        ns.exec(&["ip", "link", "set", inner, "up"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn remove(&self) {
        let quiet = |args: &[&str]| Command::new("ip").args(args).output().ok();
        quiet(&["netns", "del", &self.name]);
        quiet(&["link", "del", &self.outer]);
    }

    /// Runs `args` inside the namespace, failing the test unless it succeeds.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// `cmd` (program, arguments and environment) run inside the namespace. `ip netns exec`
    /// execs it, so the child's pid is the program's.
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut w = Command::new("ip");
        w.args(["netns", "exec", &self.name]).arg(cmd.get_program());
        w.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => w.env(k, v),
                None => w.env_remove(k),
            };
        }
        w
    }

    /// New TCP connections from inside the namespace to `addr` go to `to` instead (DNAT).
    pub fn redirect(&self, addr: &str, to: SocketAddr) {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let to = to.to_string();
        self.exec(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            host,
            "--dport",
            port,
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
    }

    /// Whether a TCP connection to `addr` opens from inside the namespace.
    pub fn reaches(&self, addr: &str) -> bool {
        let (host, port) = addr.rsplit_once(':').unwrap();
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "timeout", "3", "bash", "-c", &probe,
            ])
            .output()
            .expect("run ip netns exec");
        out.status.success()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Whether a TCP connection to `addr` opens from here (the root namespace).
pub fn reaches_from_here(addr: &str) -> bool {
    let addr: SocketAddr = addr.parse().unwrap();
    TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok()
}

/// A TCP relay that holds every chunk it forwards, each way, for a delay that can be changed
/// while it runs: latency in user space, for a kernel without `sch_netem`. Listens on `addr`
/// and forwards each connection to `to`. Its threads end with their connections.
pub struct DelayRelay {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    /// Bytes forwarded, and chunks held back for a non-zero delay.
    pub bytes: Arc<AtomicU64>,
    pub delayed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl DelayRelay {
    pub fn start(listen: &str, to: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).expect("relay bind");
        listener.set_nonblocking(true).unwrap();
        let relay = DelayRelay {
            addr: listener.local_addr().unwrap(),
            delay_ms: Arc::default(),
            bytes: Arc::default(),
            delayed: Arc::default(),
            stop: Arc::default(),
        };
        let (delay, bytes, delayed, stop) = (
            relay.delay_ms.clone(),
            relay.bytes.clone(),
            relay.delayed.clone(),
            relay.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                for (from, into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let c = (delay.clone(), bytes.clone(), delayed.clone());
                    std::thread::spawn(move || pump(from, into, c));
                }
            }
        });
        relay
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for DelayRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Forwards `from` to `into`, each chunk once its delay (read when it arrived) has passed, in
/// order; on end of stream, shuts `into` for writing.
fn pump(
    mut from: TcpStream,
    mut into: TcpStream,
    (delay, bytes, delayed): (Arc<AtomicU64>, Arc<AtomicU64>, Arc<AtomicU64>),
) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            let ms = delay.load(Ordering::Relaxed);
            delayed.fetch_add(u64::from(ms > 0), Ordering::Relaxed);
            let due = Instant::now() + Duration::from_millis(ms);
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    });
    for (due, chunk) in rx {
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if into.write_all(&chunk).is_err() {
            break;
        }
        bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
    }
    let _ = into.shutdown(Shutdown::Write);
}
