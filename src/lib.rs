//! Landfall: an exactly-once stream processor for ad-view events.
//!
//! The data flows through the modules in this order:
//!
//! ```text
//!  generator ──► producer ──► Kafka topic (transactions; aborted ones are never read)
//!                                  │
//!                                  ▼  read_committed
//!  source ──► decode ──► enrich ──► window ──► sink (Parquet: temp, fsync, rename, fsync dir)
//!                                                 │
//!                                                 ▼
//!                            state (sled checkpoint) ──► commit (Kafka offsets + watermark)
//! ```
//!
//! `cli` and `config` turn flags and environment variables into validated settings; `kafka`
//! holds the client plumbing every role shares; `shutdown` turns signals into a cancellation
//! token; `metrics` serves /metrics, /healthz and /readyz; `bench` measures the pipeline against bare librdkafka; `readback` reads landed files
//! back, for `windows` (the query side: merged, pruned answers for the CLI and `GET /windows`)
//! and `verify` (the audit of output against the log).

pub mod bench;
pub mod cli;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod failpoint;
pub mod generator;
pub mod identity;
pub mod kafka;
pub mod metrics;
pub mod peek;
pub mod pipeline;
pub mod producer;
pub mod readback;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod state;
pub mod verify;
pub mod window;
pub mod windows;
