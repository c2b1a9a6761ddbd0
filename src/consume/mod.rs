//! The consume pipeline, in the order a record flows through it:
//!
//! ```text
//!  source ──► feed ──► decode ──► enrich ──► window ──► sink (temp, fsync, rename, fsync dir)
//!  (poll,     (batches  (bytes →    (campaign  (event-time      │
//!  rebalance)  to the    event or    table)     windows,        ▼
//!              worker)   reject)                watermark)  state (sled checkpoint) ──► commit
//! ```
//!
//! [`pipeline`] holds the per-partition state and applies each stage to a record; [`source`]
//! owns the Kafka consumer and its poll loop, which drives checkpoints and commits.

mod callbacks;
pub mod commit;
pub mod decode;
pub mod enrich;
mod feed;
pub mod fetch;
mod open;
pub mod pipeline;
pub mod reject;
pub mod sink;
pub mod source;
pub mod start;
pub mod state;
pub mod window;

pub use source::{run, ConsumeError, ConsumeSummary};
