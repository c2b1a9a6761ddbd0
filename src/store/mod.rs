//! Where landed files live: a local directory (`/data/report`, `file:///data/report`) or a
//! prefix in an object store (`s3://bucket/report`, `gs://…`, `az://…`).
//!
//! A [`Root`] is one of them. Files under it are named by their path relative to the root
//! (`date=2024-09-13/hour=06/…parquet`), and shown to users as the root joined with that
//! path, so an error or a log line names the file as the user would look for it:
//! `/data/report/date=…` or `s3://bucket/report/date=…`.
//!
//! Local roots keep the durable publish protocol of `consume::sink::publish` (temporary file,
//! fsync, link, directory fsync). Object roots land each file in one conditional PUT (see
//! [`object`]): the store makes it visible whole or not at all, so readers never see a
//! partial file and no temporary object is ever written.

pub mod object;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use object::{ObjectRoot, StoreError};

/// How long a store operation keeps retrying a store that fails (throttling, 5xx, refused
/// connections) before the command stops, unless `--store-timeout` says otherwise.
pub const DEFAULT_STORE_TIMEOUT: Duration = Duration::from_secs(60);

/// A directory of landed files, local or in an object store.
#[derive(Clone)]
pub enum Root {
    Local(PathBuf),
    Object(Arc<ObjectRoot>),
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Root({self})")
    }
}

impl fmt::Display for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Root::Local(p) => write!(f, "{}", p.display()),
            Root::Object(o) => f.write_str(o.url()),
        }
    }
}

/// `s3://…`-style: a scheme of letters, digits, `+`, `-` or `.` followed by `://`.
fn scheme(value: &str) -> Option<&str> {
    let (scheme, _) = value.split_once("://")?;
    let ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    ok.then_some(scheme)
}

impl Root {
    /// Parses `--output-dir` or `--rejects-dir`: a plain path or `file://` URL is a local
    /// directory; `s3://`, `s3a://`, `gs://`, `az://`, `abfs://` and `abfss://` an object store,
    /// configured from that cloud's standard environment. Nothing is contacted here.
    pub fn parse(value: &Path, timeout: Duration) -> Result<Root, String> {
        let Some(text) = value.to_str() else {
            return Ok(Root::Local(value.to_path_buf()));
        };
        match scheme(text) {
            None => Ok(Root::Local(value.to_path_buf())),
            Some("file") => {
                let path = &text["file://".len()..];
                if !path.starts_with('/') {
                    return Err("a file:// URL needs an absolute path: file:///data/report".into());
                }
                Ok(Root::Local(PathBuf::from(path)))
            }
            Some(_) => Ok(Root::Object(Arc::new(ObjectRoot::from_url(text, timeout)?))),
        }
    }

    /// The local directory, for a local root.
    pub fn local(&self) -> Option<&Path> {
        match self {
            Root::Local(p) => Some(p),
            Root::Object(_) => None,
        }
    }

    /// How a file under the root is named to users: the root joined with `rel`.
    pub fn join(&self, rel: &Path) -> PathBuf {
        match self {
            Root::Local(p) => p.join(rel),
            Root::Object(o) => PathBuf::from(format!("{}/{}", o.url(), rel_key(rel))),
        }
    }

    /// The path of `shown` (a name from [`Root::join`]) relative to the root.
    pub fn relative<'a>(&self, shown: &'a Path) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            Root::Local(p) => shown.strip_prefix(p).ok().map(|r| r.to_string_lossy()),
            Root::Object(o) => shown
                .to_str()?
                .strip_prefix(o.url())?
                .strip_prefix('/')
                .map(std::borrow::Cow::Borrowed),
        }
    }

    /// Whether both name the same place, or one lies inside the other (report globs must never
    /// match rejects). Local paths compare by components, URLs by their text.
    pub fn overlaps(&self, other: &Root) -> bool {
        match (self, other) {
            (Root::Local(a), Root::Local(b)) => a.starts_with(b) || b.starts_with(a),
            (Root::Object(a), Root::Object(b)) => {
                let (a, b) = (format!("{}/", a.url()), format!("{}/", b.url()));
                a.starts_with(&b) || b.starts_with(&a)
            }
            _ => false,
        }
    }
}

/// A relative path as an object key suffix: `/`-separated.
pub fn rel_key(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Root, String> {
        Root::parse(Path::new(v), DEFAULT_STORE_TIMEOUT)
    }

    #[test]
    fn paths_and_file_urls_are_local() {
        assert_eq!(
            parse("out/report").unwrap().local(),
            Some(Path::new("out/report"))
        );
        assert_eq!(
            parse("file:///data/report").unwrap().local(),
            Some(Path::new("/data/report"))
        );
        assert!(parse("file://data").unwrap_err().contains("absolute"));
        // A colon alone is a file name, not a scheme.
        assert!(parse("c:report").unwrap().local().is_some());
    }

    #[test]
    fn object_urls_name_their_files_as_urls() {
        let root = parse("s3://bucket/land/report/").unwrap();
        assert_eq!(root.to_string(), "s3://bucket/land/report");
        let shown = root.join(Path::new("date=2024-09-13/hour=06/t-p0000.parquet"));
        assert_eq!(
            shown,
            PathBuf::from("s3://bucket/land/report/date=2024-09-13/hour=06/t-p0000.parquet")
        );
        assert_eq!(
            root.relative(&shown).as_deref(),
            Some("date=2024-09-13/hour=06/t-p0000.parquet")
        );
        let bucket_only = parse("s3://bucket").unwrap();
        assert_eq!(bucket_only.to_string(), "s3://bucket");
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        assert!(parse("ftp://host/x").unwrap_err().contains("ftp"));
        assert!(parse("s3:///report").unwrap_err().contains("bucket"));
        assert!(parse("s3://user:secret@bucket/x")
            .unwrap_err()
            .contains("credentials"));
    }

    #[test]
    fn nesting_is_by_component() {
        let (a, b, c) = (
            parse("s3://b/report").unwrap(),
            parse("s3://b/report/rejects").unwrap(),
            parse("s3://b/report2").unwrap(),
        );
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&parse("report").unwrap()));
    }
}
