//! Named crash points for the recovery tests. With the `failpoints` feature, setting
//! `LANDFALL_FAILPOINT=<name>:<n>` makes the process abort (no unwinding, no cleanup, like
//! kill -9) the n-th time it reaches that point, or panic there for the points that stand for
//! a bug (`panic_at`). Without the feature, both compile to nothing.
//!
//! With `LANDFALL_FAILPOINT_PAUSE=<file>` as well, a due `hit` does not abort: it creates
//! `<file>` and holds the thread that reached the point until the file is removed, so a test
//! can inject an I/O fault (with libfiu) aimed at exactly the step that follows. A pausing
//! test may name several points, `<name>:<n>,<name>:<n>` (to arm a fault at one and clear it
//! at the next).

/// Whether the named point is reached for the n-th time, n as `LANDFALL_FAILPOINT` says.
#[cfg(feature = "failpoints")]
fn due(name: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGETS: OnceLock<Vec<(String, u64, AtomicU64)>> = OnceLock::new();
    let targets = TARGETS.get_or_init(|| {
        let v = std::env::var("LANDFALL_FAILPOINT").unwrap_or_default();
        v.split(',')
            .filter(|t| !t.is_empty())
            .map(|t| {
                let (n, k) = t.rsplit_once(':').unwrap_or((t, "1"));
                (n.to_string(), k.parse().unwrap_or(1), AtomicU64::new(0))
            })
            .collect()
    });
    targets
        .iter()
        .any(|(n, k, count)| n == name && count.fetch_add(1, Ordering::SeqCst) + 1 == *k)
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if due(name) {
        if let Some(file) = std::env::var_os("LANDFALL_FAILPOINT_PAUSE") {
            return pause(name, std::path::Path::new(&file));
        }
        eprintln!("landfall: failpoint {name} hit; aborting");
        std::process::abort();
    }
}

/// Holds this thread at the point until the test removes `file`.
#[cfg(feature = "failpoints")]
fn pause(name: &str, file: &std::path::Path) {
    // Created empty: a write fault the test has armed must not stop the pause itself.
    if let Err(e) = std::fs::File::create(file) {
        panic!(
            "failpoint {name}: cannot create the pause file {}: {e}",
            file.display()
        );
    }
    while file.exists() {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A panic, as a bug would raise one: the tests check that it ends the run instead of
/// hanging it.
#[cfg(feature = "failpoints")]
pub fn panic_at(name: &str) {
    if due(name) {
        panic!("failpoint {name} hit");
    }
}

/// A test knob: with `LANDFALL_NAMED_TEMP_FILES=1` every temporary file is named, as on a
/// system without `O_TMPFILE`, so the crash suite covers that way of landing too.
#[cfg(feature = "failpoints")]
pub fn named_temp_files() -> bool {
    static NAMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *NAMED.get_or_init(|| std::env::var("LANDFALL_NAMED_TEMP_FILES").is_ok_and(|v| v == "1"))
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn named_temp_files() -> bool {
    false
}

/// Whether to skip a step, the n-th time it is reached: for the tests of a path the code
/// takes only in a race.
#[cfg(feature = "failpoints")]
pub fn skip(name: &str) -> bool {
    due(name)
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn skip(_name: &str) -> bool {
    false
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn panic_at(_name: &str) {}
