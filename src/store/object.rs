//! A prefix in an object store, through the `object_store` crate (S3 and S3-compatible
//! servers, Google Cloud Storage, Azure Blob Storage), configured from each cloud's standard
//! environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, instance and web-identity credentials;
//! `GOOGLE_SERVICE_ACCOUNT`, `GOOGLE_APPLICATION_CREDENTIALS`; `AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_ACCOUNT_KEY`, and the like.
//!
//! Every operation is synchronous for its caller (the pipeline's worker, `verify`, a query)
//! and runs on one small runtime shared by every store in the process. A store that fails
//! (throttling, 5xx, a refused connection) is retried with backoff until the root's timeout
//! (`--store-timeout`) has passed since the operation began; then the operation fails, naming
//! the object and the last error. A refusal (credentials, permissions) fails at once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{
    BackoffConfig, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    RetryConfig,
};
use tracing::warn;

/// The most one PUT carries on S3 (5 GiB). Landfall lands every file in one conditional PUT
/// (multipart uploads take no condition in `object_store`), so a larger file is an error.
pub const MAX_SINGLE_PUT: usize = 5 * 1024 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {url}: {source}")]
    Refused {
        op: &'static str,
        url: String,
        source: Box<object_store::Error>,
    },
    #[error(
        "{op} {url}: the store kept failing for {} (--store-timeout {}): {source}",
        humantime::format_duration(*waited),
        humantime::format_duration(*timeout)
    )]
    GaveUp {
        op: &'static str,
        url: String,
        waited: Duration,
        timeout: Duration,
        source: Box<object_store::Error>,
    },
    #[error(
        "{url} would be {bytes} bytes, more than one PUT carries ({MAX_SINGLE_PUT} bytes); \
         Landfall lands each file in one conditional PUT"
    )]
    TooLarge { url: String, bytes: usize },
    #[error(
        "the store at {url} does not enforce conditional writes: {detail}. Exactly-once needs \
         \"create only if absent\" (S3 If-None-Match: *) so that a file already landed is never \
         replaced. Use a store that enforces it, or, if this prefix is written by one consumer \
         at a time and never by anything else, pass --assume-single-writer"
    )]
    Overwrites { url: String, detail: String },
}

/// The runtime every object store's requests run on: two threads, made on first use.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("landfall-store")
            .enable_all()
            .build()
            .expect("building the object store runtime")
    })
}

/// A prefix in a bucket (or container).
pub struct ObjectRoot {
    /// `s3://bucket/prefix`, without a trailing slash: how files are named to users.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The prefix inside the bucket, without slashes at either end; empty for the bucket root.
    prefix: String,
    timeout: Duration,
}

impl ObjectRoot {
    /// A store for `url` from the environment. Nothing is contacted here: a wrong credential
    /// or an unreachable endpoint shows at the first request.
    pub fn from_url(url: &str, timeout: Duration) -> Result<ObjectRoot, String> {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() {
            return Err(format!(
                "{url} names no bucket: use {scheme}://BUCKET/PREFIX"
            ));
        }
        if authority
            .split_once('@')
            .is_some_and(|(user, _)| user.contains(':'))
        {
            return Err(
                "the URL holds credentials; give them in the environment (AWS_ACCESS_KEY_ID \
                 and the like), never in a URL that logs print"
                    .into(),
            );
        }
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 10,
            retry_timeout: timeout.min(Duration::from_secs(180)),
        };
        let store: Arc<dyn ObjectStore> = match scheme {
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .with_retry(retry)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            other => {
                return Err(format!(
                    "{other}:// is not a store Landfall lands to; use a path, file://, s3://, \
                     gs:// or az://"
                ))
            }
        };
        let prefix = path.trim_matches('/').to_string();
        Key::parse(&prefix).map_err(|e| format!("prefix {prefix:?}: {e}"))?;
        let url = format!(
            "{scheme}://{authority}{}{prefix}",
            if prefix.is_empty() { "" } else { "/" }
        );
        Ok(ObjectRoot {
            url,
            store,
            prefix,
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key of `rel` (a `/`-separated path below the root).
    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    /// How `rel` is named to users.
    pub fn shown(&self, rel: &str) -> String {
        format!("{}/{rel}", self.url)
    }

    /// Runs `op` until it succeeds, fails for good, or has kept failing for the timeout.
    /// Only transient failures are retried: `object_store`'s `Generic` errors (5xx and
    /// throttling its own retries did not overcome, and transport errors such as a refused
    /// connection or a timed-out PUT, which it does not retry).
    fn retrying<T, F>(
        &self,
        what: &'static str,
        rel: &str,
        op: impl Fn() -> F,
    ) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = object_store::Result<T>>,
    {
        let started = Instant::now();
        let mut pause = Duration::from_millis(200);
        let mut warned = false;
        loop {
            let source = match runtime().block_on(op()) {
                Ok(v) => return Ok(v),
                Err(e @ object_store::Error::Generic { .. }) => e,
                Err(source) => {
                    return Err(StoreError::Refused {
                        op: what,
                        url: self.shown(rel),
                        source: Box::new(source),
                    })
                }
            };
            let waited = started.elapsed();
            if waited >= self.timeout {
                return Err(StoreError::GaveUp {
                    op: what,
                    url: self.shown(rel),
                    waited,
                    timeout: self.timeout,
                    source: Box::new(source),
                });
            }
            if !warned {
                warn!(object = %self.shown(rel), op = what, error = %source, timeout = %humantime::format_duration(self.timeout), "the object store is failing; retrying");
                warned = true;
            }
            std::thread::sleep(pause.min(self.timeout.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Creates `rel` with `bytes` only if no object has that name: one PUT with
    /// `If-None-Match: *` (S3), generation 0 (GCS) or `If-None-Match: *` (Azure). Returns
    /// false, having changed nothing, if the name was taken. A PUT retried after a timeout
    /// whose first attempt did land returns false too: the caller then reads what is there.
    pub fn create(&self, rel: &str, bytes: Bytes) -> Result<bool, StoreError> {
        if bytes.len() > MAX_SINGLE_PUT {
            return Err(StoreError::TooLarge {
                url: self.shown(rel),
                bytes: bytes.len(),
            });
        }
        let key = self.key(rel);
        let put = || {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let (store, key, bytes) = (Arc::clone(&self.store), key.clone(), bytes.clone());
            async move {
                match store.put_opts(&key, bytes.into(), opts).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        };
        self.retrying("create", rel, put)
    }

    /// Whether an object is at `rel`.
    pub fn exists(&self, rel: &str) -> Result<bool, StoreError> {
        let key = self.key(rel);
        self.retrying("look up", rel, || {
            let (store, key) = (Arc::clone(&self.store), key.clone());
            async move {
                match store.head(&key).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// The whole object at `rel`, or None if there is none.
    pub fn get(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        let key = self.key(rel);
        self.retrying("read", rel, || {
            let (store, key) = (Arc::clone(&self.store), key.clone());
            async move {
                match store.get(&key).await {
                    Ok(r) => r.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
    }

    /// The last `n` bytes of `rel` (all of it if it is shorter), and its size: one request
    /// that, for a small Parquet file, brings the whole file, and for a large one its footer.
    pub fn tail(&self, rel: &str, n: u64) -> Result<(Bytes, u64), StoreError> {
        let key = self.key(rel);
        self.retrying("read", rel, || {
            let (store, key) = (Arc::clone(&self.store), key.clone());
            async move {
                let opts = GetOptions {
                    range: Some(GetRange::Suffix(n)),
                    ..Default::default()
                };
                let r = store.get_opts(&key, opts).await?;
                let size = r.meta.size;
                Ok((r.bytes().await?, size))
            }
        })
    }

    /// Bytes `range` of `rel`.
    pub fn range(&self, rel: &str, range: std::ops::Range<u64>) -> Result<Bytes, StoreError> {
        let key = self.key(rel);
        self.retrying("read", rel, || {
            let (store, key, range) = (Arc::clone(&self.store), key.clone(), range.clone());
            async move { store.get_range(&key, range).await }
        })
    }

    pub fn delete(&self, rel: &str) -> Result<(), StoreError> {
        let key = self.key(rel);
        self.retrying("delete", rel, || {
            let (store, key) = (Arc::clone(&self.store), key.clone());
            async move { store.delete(&key).await }
        })
    }

    /// Every object below the root, as (path relative to the root, size), descending only
    /// into the "directories" (`/`-delimited prefixes, given relative to the root) that `enter`
    /// accepts. One LIST per directory entered, as on local disk one `readdir`.
    pub fn list(
        &self,
        mut enter: impl FnMut(&str) -> bool,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            let key = if dir.is_empty() {
                (!self.prefix.is_empty()).then(|| Key::from(self.prefix.as_str()))
            } else {
                Some(self.key(&dir))
            };
            let listed = self.retrying("list", &dir, || {
                let (store, key) = (Arc::clone(&self.store), key.clone());
                async move { store.list_with_delimiter(key.as_ref()).await }
            })?;
            for d in listed.common_prefixes {
                if let Some(rel) = self.relative(d.as_ref()) {
                    if enter(rel) {
                        dirs.push(rel.to_string());
                    }
                }
            }
            for o in listed.objects {
                if let Some(rel) = self.relative(o.location.as_ref()) {
                    out.push((rel.to_string(), o.size));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A key relative to the root.
    fn relative<'a>(&self, key: &'a str) -> Option<&'a str> {
        if self.prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
    }

    /// Proves the store refuses to replace an object: creates a probe object under the root,
    /// tries to create it again, and expects "already exists" with the first content kept.
    /// The probe is removed afterwards (a leftover `_landfall.probe.*` is skipped by readers,
    /// as every name starting with `_` is).
    pub fn probe(&self) -> Result<(), StoreError> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let rel = format!("_landfall.probe.{}-{stamp}", std::process::id());
        let first = Bytes::from_static(b"landfall probe: first\n");
        let created = self.create(&rel, first.clone())?;
        let second = self.create(&rel, Bytes::from_static(b"landfall probe: second\n"));
        let kept = self.get(&rel);
        if let Err(e) = self.delete(&rel) {
            warn!(object = %self.shown(&rel), error = %e, "could not remove the store probe; it is harmless and readers skip it");
        }
        let overwrites = |detail: &str| StoreError::Overwrites {
            url: self.url.clone(),
            detail: detail.to_string(),
        };
        if !created {
            return Err(overwrites(
                "a fresh probe name was reported as already taken",
            ));
        }
        match (second?, kept?) {
            (true, _) => Err(overwrites(&format!(
                "a second create-only-if-absent PUT of {} succeeded and replaced the object",
                self.shown(&rel)
            ))),
            (false, Some(k)) if k == first => Ok(()),
            (false, _) => Err(overwrites(&format!(
                "a second create of {} was refused, yet the object changed",
                self.shown(&rel)
            ))),
        }
    }
}
