//! The poll loop's turn: the routed partitions' records from the fetch queue, then the
//! consumer's own queue (rebalances, errors, logs, statistics, and records whose routing
//! missed), and what the loop notes between ticks.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use tracing::{info, warn};

use super::{check_topic_id, ConsumeError, Session, EVENTS_PER_TURN, POLL_WAIT, READ_MOST};
use crate::consume::callbacks::SourceContext;
use crate::consume::feed::{Feed, Polled};
use crate::consume::pipeline::PipelineError;
use crate::consume::start::StartFrom;
use crate::ops::kafka::{refusal, Doing, KafkaSettings, Repeats};

impl Session {
    /// One turn of the poll loop: the routed partitions' records, many at a time, then the
    /// consumer's events (and any records that came through its queue). Waits up to
    /// `POLL_WAIT` for the one or the other: for the fetch queue while partitions are routed
    /// to it and the consumer's queue brought no record last turn, else for the consumer's
    /// queue. Returns how many records and events it took, and whether it handed a full batch
    /// to the worker.
    pub(super) fn poll_once(&mut self) -> Result<(usize, bool), ConsumeError> {
        let wait_for_routed = !self.routed.is_empty() && !self.records_on_main;
        let (mut taken, mut sent) = self.read_routed(Duration::ZERO)?;
        if taken == 0 && wait_for_routed {
            (taken, sent) = self.read_routed(POLL_WAIT)?;
        }
        let wait = if taken == 0 && !wait_for_routed {
            POLL_WAIT
        } else {
            Duration::ZERO
        };
        let (events, events_sent) = self.poll_events(wait)?;
        Ok((taken + events, sent || events_sent))
    }

    /// Serves what waits on the consumer's queue, up to `EVENTS_PER_TURN` and up to the first
    /// rebalance (carried out before anything after it is taken), waiting up to `wait` for
    /// the first. Returns how many records and errors it took, and whether it handed a full
    /// batch to the worker.
    fn poll_events(&mut self, mut wait: Duration) -> Result<(usize, bool), ConsumeError> {
        let (mut taken, mut sent) = (0, false);
        self.records_on_main = false;
        for _ in 0..EVENTS_PER_TURN {
            if wait.is_zero() && !self.fetch.events_waiting() {
                break;
            }
            // None also after a log line, statistics or a rebalance were served.
            let polled = self.consumer.poll(wait);
            wait = Duration::ZERO;
            if let Some(polled) = polled {
                taken += 1;
                if let Ok(m) = &polled {
                    self.records_on_main = true;
                    if self.routed.remove(&m.partition()) {
                        info!(
                            partition = m.partition(),
                            "this partition's records come through the consumer's queue: its \
                             routing to the fetch queue did not hold"
                        );
                    }
                }
                let topic_id = self.topic_id.as_deref();
                let polled = match &polled {
                    Ok(m) => Ok(Polled::from(m)),
                    Err(e) => Err(e.clone()),
                };
                sent |= self
                    .notes
                    .take(&self.consumer, &self.feed, topic_id, polled)?;
            }
            if self.consumer.context().rebalance_pending() {
                break;
            }
        }
        Ok((taken, sent))
    }

    /// Takes what the fetch queue holds, up to `READ_MOST` (see `FetchQueue::read`).
    fn read_routed(&mut self, wait: Duration) -> Result<(usize, bool), ConsumeError> {
        let Session {
            fetch,
            consumer,
            feed,
            topic_id,
            notes,
            ..
        } = self;
        let mut sent = false;
        let taken = fetch.read(wait, READ_MOST, |polled| {
            sent |= notes.take(consumer, feed, topic_id.as_deref(), polled)?;
            Ok::<(), ConsumeError>(())
        })?;
        Ok((taken, sent))
    }
}

/// What the poll loop notes between ticks.
pub(super) struct PollNotes {
    /// Partitions that reported their end but may still have a transaction's records to come.
    /// An end belongs to one assignment: a revoke and an assignment forget it, or the next
    /// tick would judge a partition recovered from an older commit by where the previous
    /// assignment stood (librdkafka keeps that position, and its statistics that end, until
    /// the old fetcher has stopped), and skip the records between.
    pub(super) eof_pending: BTreeSet<i32>,
    pub(super) noisy: Repeats,
    /// For naming a refusal: the brokers, the topic, the user, the group.
    pub(super) kafka: KafkaSettings,
    pub(super) group: String,
    pub(super) start_from: StartFrom,
}

impl PollNotes {
    /// A refusal by the brokers (a missing ACL, a failed login) behind `e`, or noted by the
    /// client since start-up: no retry can fix it.
    pub(super) fn refused(&self, e: Option<&KafkaError>) -> Result<(), PipelineError> {
        let doing = Doing::Reading { group: &self.group };
        refusal::behind(e, &self.kafka, doing).map_or(Ok(()), |r| Err(r.into()))
    }

    /// Takes what one poll returned: a record goes to the worker, an end-of-partition event
    /// is noted. Returns whether a full batch was handed over.
    fn take(
        &mut self,
        consumer: &BaseConsumer<SourceContext>,
        feed: &Feed,
        topic_id: Option<&str>,
        polled: Result<Polled<'_>, KafkaError>,
    ) -> Result<bool, ConsumeError> {
        match polled {
            Ok(m) => {
                // Most records come with no end-of-partition event noted: skip the lookup.
                if !self.eof_pending.is_empty() {
                    self.eof_pending.remove(&m.partition);
                }
                Ok(feed.push(m)?)
            }
            Err(KafkaError::PartitionEOF(p)) => {
                self.eof_pending.insert(p);
                Ok(false)
            }
            Err(e) => {
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::AutoOffsetReset)
                        | Some(RDKafkaErrorCode::OffsetOutOfRange)
                ) {
                    // A topic deleted and created again starts its offsets over: that is not
                    // retention, and the error says which it was.
                    let topic = &consumer.context().topic;
                    check_topic_id(consumer.client(), topic, topic_id)?;
                    return Err(PipelineError::OffsetGone(e).into());
                }
                self.refused(Some(&e))?;
                if let Some((_, reason)) = consumer.client().fatal_error() {
                    return Err(ConsumeError::KafkaFatal(reason));
                }
                if let Some(repeated) = self.noisy.admit(&e.to_string()) {
                    warn!(error = %e, repeated, "consumer error; continuing");
                }
                Ok(false)
            }
        }
    }
}
