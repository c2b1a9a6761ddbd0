//! The producer side: random ad-view events ([`generator`]) sent to Kafka in transactions
//! ([`producer`]).

pub mod generator;
pub mod producer;
mod txn;
