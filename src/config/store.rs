//! Output directories, which may name an object store, and the store's settings.

use std::path::Path;
use std::time::Duration;

use super::{ConfigError, Problems};
use crate::cli::StoreArgs;
use crate::store::Root;

/// The longest `--store-timeout`: past it, a consumer stuck on a store would also outlast its
/// group's poll interval.
pub const MAX_STORE_TIMEOUT: Duration = Duration::from_secs(3_600);

/// `--store-timeout`: a duration between 1 s and an hour.
pub fn store_timeout(args: &StoreArgs, p: &mut Problems) -> Duration {
    let value = args.store_timeout.trim();
    let why = match humantime::parse_duration(value) {
        Ok(d) if d >= Duration::from_secs(1) && d <= MAX_STORE_TIMEOUT => return d,
        Ok(_) => "must be between 1s and 1h".to_string(),
        Err(e) => format!("expected a duration such as 30s or 5m: {e}"),
    };
    p.push(
        "--store-timeout",
        "LANDFALL_STORE_TIMEOUT",
        format!("{value:?}"),
        &why,
    );
    crate::store::DEFAULT_STORE_TIMEOUT
}

/// A directory setting: a path, or an object-store URL configured from the environment.
pub fn root(flag: &str, env: &str, value: &Path, timeout: Duration, p: &mut Problems) -> Root {
    Root::parse(value, timeout).unwrap_or_else(|why| {
        p.push(flag, env, value.display(), &why);
        Root::Local(value.to_path_buf())
    })
}

/// `landfall windows` and `landfall serve`: the report directory they read.
pub fn report_root(dir: &Path, store: &StoreArgs) -> Result<Root, ConfigError> {
    let mut p = Problems::default();
    let timeout = store_timeout(store, &mut p);
    let root = root("--output-dir", "LANDFALL_OUTPUT_DIR", dir, timeout, &mut p);
    p.finish(root)
}
