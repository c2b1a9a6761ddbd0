//! The consumer's context: what librdkafka's callbacks (rebalance, errors, logs, statistics)
//! record for the poll loop in `source` to carry out. Nothing here commits, sleeps or retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use tracing::warn;

use super::feed::lock;
use crate::ops::kafka::PartitionEnds;
use crate::ops::metrics;

/// A rebalance as librdkafka reported it, for the poll loop to carry out.
pub(super) enum Rebalance {
    Assign(TopicPartitionList),
    /// `lost`: another member owns them already (this one was cut off past its session
    /// timeout), so nothing may be committed for them.
    Revoke {
        tpl: TopicPartitionList,
        lost: bool,
    },
}

/// The consumer's context: what librdkafka's callbacks record, and nothing they act on.
pub struct SourceContext {
    rebalances: Mutex<Vec<Rebalance>>,
    /// The poll loop is running and carries out what the callback records. When it is not
    /// (the client is closing after the loop ended), a revoke is answered at once: there is
    /// nothing left to commit, and librdkafka's close waits for the answer.
    pub(super) attended: AtomicBool,
    /// Each partition's end as the broker last reported it (the last stable offset, which is
    /// what a read_committed reader can reach), and where the fetcher stood at its last
    /// end-of-partition event, from librdkafka's statistics.
    pub(super) ends: PartitionEnds,
    pub(super) topic: String,
    /// The group uses the incremental (cooperative) rebalance protocol.
    pub(super) cooperative: bool,
}

impl SourceContext {
    pub(super) fn new(topic: String, cooperative: bool) -> Self {
        SourceContext {
            rebalances: Mutex::new(Vec::new()),
            attended: AtomicBool::new(false),
            ends: PartitionEnds::default(),
            topic,
            cooperative,
        }
    }

    /// Whether a rebalance waits to be carried out.
    pub(super) fn rebalance_pending(&self) -> bool {
        !lock(&self.rebalances).is_empty()
    }

    pub(super) fn take_rebalances(&self) -> Vec<Rebalance> {
        std::mem::take(&mut *lock(&self.rebalances))
    }

    /// Hands partitions back to librdkafka (the end of a revoke).
    pub(super) fn unassign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let unassigned = if self.cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = unassigned {
            warn!(error = %e, "unassign failed");
        }
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::ops::kafka::log_client_error(error, reason);
    }

    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        crate::ops::kafka::log_client_line(level, fac, message);
    }

    fn stats(&self, stats: rdkafka::Statistics) {
        self.ends.record(&stats, &self.topic);
    }
}

impl ConsumerContext for SourceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        // With cooperative-sticky (the default) a rebalance only hands over the partitions
        // that move: the lists are increments, and partitions that stay keep their state and
        // keep flowing. With the eager protocol every partition is revoked and reassigned.
        // (The protocol is taken from the configuration: librdkafka's
        // rd_kafka_rebalance_protocol() can hang when called from this callback while the
        // consumer closes, librdkafka#4041.)
        let attended = self.attended.load(Ordering::SeqCst);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if attended => {
                lock(&self.rebalances).push(Rebalance::Assign(tpl.clone()));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                warn!("partitions assigned while the consumer closes; not taken");
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                metrics::consumer().process.set_ready(false);
                if attended {
                    let lost = consumer.assignment_lost();
                    lock(&self.rebalances).push(Rebalance::Revoke {
                        tpl: tpl.clone(),
                        lost,
                    });
                } else {
                    self.unassign(consumer, tpl);
                }
            }
            other => warn!(error = ?other, "unexpected rebalance event"),
        }
    }
}
