//! Plumbing every role shares: the Kafka client settings and probes ([`kafka`]), metrics and
//! the HTTP server ([`metrics`]), signals ([`shutdown`]), failpoints for the recovery tests
//! ([`failpoint`]) and a read_committed look at a topic ([`peek`]).

pub mod failpoint;
pub mod kafka;
pub mod metrics;
pub mod peek;
pub mod shutdown;
