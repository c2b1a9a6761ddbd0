//! Named crash points for the recovery tests. With the `failpoints` feature, setting
//! `LANDFALL_FAILPOINT=<name>:<n>` makes the process abort (no unwinding, no cleanup, like
//! kill -9) the n-th time it reaches that point, or panic there for the points that stand for
//! a bug (`panic_at`). Without the feature, both compile to nothing.

/// Whether the named point is reached for the n-th time, n as `LANDFALL_FAILPOINT` says.
#[cfg(feature = "failpoints")]
fn due(name: &str) -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("LANDFALL_FAILPOINT").ok()?;
        let (n, k) = v.rsplit_once(':').unwrap_or((v.as_str(), "1"));
        Some((n.to_string(), k.parse().unwrap_or(1)))
    });
    matches!(target, Some((n, k)) if n == name && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *k)
}

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    if due(name) {
        eprintln!("landfall: failpoint {name} hit; aborting");
        std::process::abort();
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

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn panic_at(_name: &str) {}
