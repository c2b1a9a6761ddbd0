//! A failing disk, injected with libfiu (Debian's `fiu-utils`): the consumer runs under
//! `fiu-run -x` (the POSIX preload, which wraps libc's `fsync`, `write`, `pwrite`, ...), and
//! each test fails exactly one operation: an output file's fsync, the directory fsync, the
//! sled flush (EIO), an output file's write (ENOSPC); an output file is a window or rejects
//! file. The test aims each fault by holding the consumer's pipeline at the failpoint just
//! before that operation (`LANDFALL_FAILPOINT_PAUSE`), arming the fault there with
//! `fiu-ctrl`, and releasing it; nothing else in the process makes that call in between
//! (sled's background flusher is off, see `consume::state`). The consumer must exit 1 naming
//! the operation and commit nothing past the unwritten data. An fsync fault fires once: a
//! consumer that retried the failed fsync would succeed and go on, so its exit shows it never
//! retries (I6). A restart then finishes byte-identical to a clean run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::harness::*;
use support::output::*;
use support::*;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// One operation to fail: the consumer is held at the `nth` hit of `failpoint`, then the
/// libfiu point `fiu_point` fails with `errno`: once, or, with `clear_at`, on every call until
/// the consumer reaches that failpoint (for a call that other threads make too).
struct Aim {
    failpoint: &'static str,
    nth: u32,
    fiu_point: &'static str,
    errno: i32,
    clear_at: Option<&'static str>,
}

impl Aim {
    fn failpoints(&self) -> String {
        let first = format!("{}:{}", self.failpoint, self.nth);
        match self.clear_at {
            Some(p) => format!("{first},{p}:1"),
            None => first,
        }
    }

    fn arm(&self) -> String {
        let once = if self.clear_at.is_some() {
            ""
        } else {
            ",onetime"
        };
        format!(
            "enable name={},failinfo={}{once}",
            self.fiu_point, self.errno
        )
    }
}

/// `cmd` (a `landfall` command) run under `fiu-run -x`, with its control pipes at `fifo`.
fn under_fiu(cmd: &Command, fifo: &Path) -> Command {
    let mut wrapped = Command::new("fiu-run");
    wrapped
        .args(["-x", "-f", path_str(fifo)])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => wrapped.env(k, v),
            None => wrapped.env_remove(k),
        };
    }
    wrapped
}

/// Sends one command to a process started by `fiu-run`, and checks that libfiu took it.
fn fiu_ctrl(fifo: &Path, pid: u32, command: &str) {
    let out = Command::new("fiu-ctrl")
        .args(["-f", path_str(fifo), "-c", command, &pid.to_string()])
        .output()
        .expect("run fiu-ctrl (Debian package fiu-utils)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "fiu-ctrl {command:?} failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The consumer, paused at a failpoint (or gone).
struct Held {
    child: ChildGuard,
    pause: PathBuf,
    fifo: PathBuf,
    log: PathBuf,
}

impl Held {
    /// Waits for the consumer to reach `point` and hold there.
    fn wait_at(&mut self, point: &str) {
        let (pause, child) = (&self.pause, &mut self.child);
        wait_until(point, Duration::from_secs(60), || {
            pause.exists() || child.child().try_wait().unwrap().is_some()
        });
        assert!(
            self.pause.exists(),
            "the consumer exited before it reached {point}:\n{}",
            read_log(&self.log)
        );
    }

    /// Tells libfiu in the consumer (`fiu-run` execs it: its pid is the child's) `command`.
    fn fiu(&mut self, command: &str) {
        fiu_ctrl(&self.fifo, self.child.child().id(), command);
    }

    fn release(&self) {
        std::fs::remove_file(&self.pause).unwrap();
    }
}

/// Consumes `topic` under libfiu until the aimed fault stops it (stderr in `consumer.stderr`),
/// and checks it stopped cleanly, saying `why`.
fn consume_into_the_fault(topic: &str, group: &str, d: &Dirs, aim: &Aim, ledger: &mut Ledger) {
    let fifo = d.tmp.path().join("fiu");
    let pause = d.tmp.path().join("paused-at");
    let mut plain = consume_cmd(topic, group, d, true);
    plain
        .env("LANDFALL_FAILPOINT", aim.failpoints())
        .env("LANDFALL_FAILPOINT_PAUSE", &pause)
        // No idle close: the fault meets open windows, records that are not landed yet.
        .env("LANDFALL_IDLE_TIMEOUT_SECS", "3600");
    let mut cmd = under_fiu(&plain, &fifo);
    let log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let child = ChildGuard::spawn(cmd);
    let mut held = Held {
        child,
        pause,
        fifo,
        log,
    };
    held.wait_at(aim.failpoint);
    held.fiu(&aim.arm());
    held.release();
    if let Some(point) = aim.clear_at {
        held.wait_at(point);
        held.fiu(&format!("disable name={}", aim.fiu_point));
        held.release();
    }
    let status = wait_exit(held.child.child(), Duration::from_secs(60), "consumer");
    held.child.0 = None;
    let why = [if aim.errno == ENOSPC {
        "No space left on device"
    } else {
        "Input/output error"
    }];
    assert_stopped_cleanly(status, &held.log, &why, topic, group, d, ledger);
}

/// The consumer's own error (the line `landfall: error: ...`), which must say `what`.
fn error_saying(d: &Dirs, what: &str) -> String {
    let log = read_log(&d.tmp.path().join("consumer.stderr"));
    let line = log
        .lines()
        .find(|l| l.starts_with("landfall: error: "))
        .unwrap_or_else(|| panic!("no error from the consumer:\n{log}"));
    assert!(
        line.contains(what),
        "the error does not say {what:?}:\n{log}"
    );
    line.to_string()
}

/// The path an error "fsync of <path> failed: ..." names.
fn fsync_failed_at(line: &str) -> PathBuf {
    let at = line
        .split("fsync of ")
        .nth(1)
        .and_then(|rest| rest.split(" failed:").next())
        .unwrap_or_else(|| panic!("no failed fsync in {line}"));
    PathBuf::from(at)
}

/// Whether `name` is how errors name an output file's temporary file: unnamed
/// (`<final name> (unnamed temporary file)`, Linux's O_TMPFILE) or under a temporary name
/// (`.<final name>.<pid>-<n>.tmp`), `rest` being what follows it in the message.
fn a_temp_file(name: &str, rest: &str) -> bool {
    name.starts_with('.') && name.contains(&format!(".tmp{rest}"))
        || name.contains(&format!(".parquet (unnamed temporary file){rest}"))
}

fn temp_files(d: &Dirs) -> Vec<PathBuf> {
    [&d.report, &d.rejects]
        .into_iter()
        .flat_map(|dir| all_files(dir))
        .filter(|f| f.to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[test]
fn eio_on_an_output_file_fsync_stops_without_commit_and_is_never_retried() {
    let mut ledger = Ledger::new("disk_file_fsync");
    let topic = unique_topic("fsyncfile");
    produce_golden(&topic, 60_000);
    let (d, group) = (dirs(), format!("{topic}-g"));
    let aim = Aim {
        failpoint: "before-file-fsync",
        nth: 2,
        fiu_point: "posix/io/sync/fsync",
        errno: EIO,
        clear_at: None,
    };
    consume_into_the_fault(&topic, &group, &d, &aim, &mut ledger);
    let failed = fsync_failed_at(&error_saying(&d, "fsync of "));
    let name = failed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        a_temp_file(&name, ""),
        "not an output file's temporary file: {failed:?}"
    );
    assert!(!failed.exists(), "{failed:?} was left behind");
    assert!(window_file_count(&d) > 0, "nothing landed before the fault");
    assert_eq!(
        temp_files(&d),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn eio_on_a_directory_fsync_stops_without_commit_and_is_never_retried() {
    let mut ledger = Ledger::new("disk_dir_fsync");
    let topic = unique_topic("fsyncdir");
    produce_golden(&topic, 60_000);
    let (d, group) = (dirs(), format!("{topic}-g"));
    let aim = Aim {
        failpoint: "after-group-files",
        nth: 2,
        fiu_point: "posix/io/sync/fsync",
        errno: EIO,
        clear_at: None,
    };
    consume_into_the_fault(&topic, &group, &d, &aim, &mut ledger);
    let failed = fsync_failed_at(&error_saying(&d, "fsync of "));
    assert!(
        failed.is_dir() && (failed.starts_with(&d.report) || failed.starts_with(&d.rejects)),
        "not an output directory: {failed:?}"
    );
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn eio_on_the_sled_flush_stops_without_commit() {
    let mut ledger = Ledger::new("disk_sled_flush");
    let topic = unique_topic("sledflush");
    produce_golden(&topic, 60_000);
    let (d, group) = (dirs(), format!("{topic}-g"));
    // sled's flush writes its log with pwrite (then sync_file_range, which libfiu does not
    // wrap); nothing else in the process calls pwrite.
    let aim = Aim {
        failpoint: "after-sled-batch",
        nth: 1,
        fiu_point: "posix/io/rw/pwrite",
        errno: EIO,
        clear_at: None,
    };
    consume_into_the_fault(&topic, &group, &d, &aim, &mut ledger);
    let line = error_saying(&d, "flushing the checkpoint to disk failed");
    assert!(line.contains(path_str(&d.state)), "{line}");
    finish_after_the_fault(&topic, &group, &d, ledger);
}

#[test]
fn enospc_on_an_output_file_write_stops_without_commit() {
    let mut ledger = Ledger::new("disk_write_enospc");
    let topic = unique_topic("enospc");
    produce_golden(&topic, 60_000);
    let (d, group) = (dirs(), format!("{topic}-g"));
    // librdkafka's threads write(2) to their wake-up pipes too, at any moment: a one-time
    // fault could land there. So every write fails from just before a temporary file's write
    // until the consumer, having seen its own fail, reaches after-failed-write.
    let aim = Aim {
        failpoint: "before-temp-write",
        nth: 10,
        fiu_point: "posix/io/rw/write",
        errno: ENOSPC,
        clear_at: Some("after-failed-write"),
    };
    consume_into_the_fault(&topic, &group, &d, &aim, &mut ledger);
    let line = error_saying(&d, "write ");
    let name = line.split('/').next_back().unwrap_or_default();
    assert!(a_temp_file(name, ":"), "{line}");
    assert!(window_file_count(&d) > 0, "nothing landed before the fault");
    assert_eq!(
        temp_files(&d),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
    finish_after_the_fault(&topic, &group, &d, ledger);
}
