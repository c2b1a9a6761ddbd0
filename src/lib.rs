//! Landfall: an exactly-once stream processor for ad-view events.
//!
//! The folders are the architecture; the data flows through them in this order:
//!
//! ```text
//!  produce: generator ──► producer ──► Kafka topic (transactions; aborted ones never read)
//!                                           │
//!                                           ▼  read_committed
//!  consume: source ──► feed ──► decode ──► enrich ──► window ──► sink (Parquet, atomically)
//!                                                                   │
//!                                                                   ▼
//!                                       state (sled checkpoint) ──► commit (Kafka offsets)
//!
//!  query:   readback ──► merge, filter ──► table, JSON, CSV, GET /windows
//!  verify:  readback + the log ──► discrepancies
//! ```
//!
//! - [`consume`]: the pipeline from Kafka to landed files and commits ([`consume::run`]).
//! - [`produce`]: the event generator and the transactional producer.
//! - [`query`]: merged, pruned answers over the landed windows, for the CLI and HTTP.
//! - [`verify`]: the audit of the output against the log.
//! - [`readback`]: the reader of landed files (footers, rows), shared by the sink's "already
//!   there" check, `query` and `verify`.
//! - [`store`]: where landed files live: a local directory, or a prefix in an object store
//!   (S3, GCS, Azure) written with conditional creates.
//! - [`identity`]: what the output depends on (topic ID, settings, campaign table), recorded
//!   in commits, footers and the directory marker, and compared on every restart.
//! - [`ops`]: Kafka plumbing, metrics and the HTTP server, signals, failpoints.
//! - [`cli`] and [`config`] turn flags and environment variables into validated settings;
//!   [`bench`] measures the pipeline against bare librdkafka.

pub mod bench;
pub mod cli;
pub mod config;
pub mod consume;
pub mod error;
pub mod event;
pub mod identity;
pub mod ops;
pub mod produce;
pub mod query;
pub mod readback;
pub mod store;
pub mod verify;

pub use error::{Error, Result};
