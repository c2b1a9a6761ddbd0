//! Named crash points for the recovery tests. With the `failpoints` feature, setting
//! `LANDFALL_FAILPOINT=<name>:<n>` makes the process abort (no unwinding, no cleanup, like
//! kill -9) the n-th time it reaches that point. Without the feature, `hit` compiles to nothing.

#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("LANDFALL_FAILPOINT").ok()?;
        let (n, k) = v.rsplit_once(':').unwrap_or((v.as_str(), "1"));
        Some((n.to_string(), k.parse().unwrap_or(1)))
    });
    if let Some((n, k)) = target {
        if n == name && COUNT.fetch_add(1, Ordering::SeqCst) + 1 == *k {
            eprintln!("landfall: failpoint {name} hit; aborting");
            std::process::abort();
        }
    }
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
