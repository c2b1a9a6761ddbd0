//! Ending a transaction: waiting for its records, then committing it, or aborting it and
//! sending its records again in a new one when it failed, is overdue or hit an abortable error.

use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{Producer, ProducerContext, ThreadedProducer};
use rdkafka::util::Timeout;
use tracing::warn;

use crate::ops::failpoint;
use crate::produce::generator::ProducedRecord;
use crate::produce::producer::{
    refused, send_records, transactional_producer, txn_error, DeliveryCounter, ProduceConfig,
    ProduceError, ProduceSummary, MAX_TXN_ATTEMPTS,
};

/// An open transaction's clock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Open {
    pub(super) opened: Instant,
    /// How long a paced transaction takes records: --txn-max-ms, but at most a quarter of the
    /// transaction timeout, whatever that says. The rest is left for the records to be
    /// acknowledged, and for an abort and a resend if they are not (see [`drain`]).
    pub(super) fill_for: Duration,
    /// Half the transaction timeout: past it, records still unacknowledged are given up on.
    overdue_after: Duration,
}

impl Open {
    /// Called right after `begin_transaction`.
    pub(super) fn now(cfg: &ProduceConfig) -> Self {
        Open {
            opened: Instant::now(),
            fill_for: cfg.txn_max.min(cfg.transaction_timeout / 4),
            overdue_after: cfg.transaction_timeout / 2,
        }
    }
}

/// How waiting for a transaction's records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// No record is in flight: the transaction can be committed (and the commit says whether
    /// one of them failed).
    Delivered,
    /// Records still unacknowledged after half the transaction timeout.
    Overdue,
}

/// Waits until no sent record is in flight (each acknowledged or failed, and its delivery
/// report served), or until the transaction is overdue.
///
/// `commit_transaction` flushes by itself, but its flush sleeps in 100 ms steps when delivery
/// reports are served by another thread, which made every commit cost 100 ms. Polling the
/// count in 1 ms steps takes the commit down to a few milliseconds.
///
/// Not waiting on past half the transaction timeout is what keeps the producer alive through a
/// broker's failure. librdkafka holds back records that cannot be sent (a partition without a
/// leader, or one paused after a broken sequence until an abort bumps the epoch), and only
/// their message timeout, the whole transaction timeout, would end the wait. By then the
/// coordinator has aborted the transaction itself and bumped the epoch, and the producer's own
/// abort is fenced, a fatal error. Seen in a hard rolling restart: a 54 s wait, then `_FENCED`.
///
/// A failed record does not end the wait early: the commit that follows reports why the
/// transaction failed (a topic the user may not write to, say, which no resend can fix), and
/// an abort sent at once can be refused by the broker (INVALID_TXN_STATE right after a refused
/// AddPartitionsToTxn), which librdkafka treats as fatal.
pub(super) fn drain<C: ProducerContext>(producer: &ThreadedProducer<C>, txn: &Open) -> Drained {
    loop {
        if producer.in_flight_count() == 0 {
            return Drained::Delivered;
        }
        if txn.opened.elapsed() >= txn.overdue_after {
            return Drained::Overdue;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Aborts a transaction this producer may have asked to commit: any refusal is fatal, since
/// the commit may have gone through.
fn abort_after_commit<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
) -> Result<(), ProduceError> {
    producer
        .abort_transaction(Timeout::Never)
        .map_err(ProduceError::Fatal)
}

/// Aborts a transaction this producer never asked to commit (planned, overdue, or stopped).
///
/// The coordinator may refuse the abort with INVALID_TXN_STATE, which librdkafka makes fatal:
/// it has no transaction of ours open. That happens when a commit's markers wait for a broker
/// that is down. The commit itself succeeded, but until its markers are written the coordinator
/// refuses the next transaction its partitions (CONCURRENT_TRANSACTIONS). librdkafka still
/// counts the refused requests as registered, so it sends an EndTxn to abort. That EndTxn waits
/// until the markers are written and then finds the committed transaction complete. Nothing of
/// this transaction reached a partition, and nothing of it was committed, since no commit was
/// asked. So this starts a new producer with the same transactional id, which makes the
/// coordinator bump the epoch, and the caller goes on as after any abort.
///
/// The same holds when librdkafka made the producer fatal while the abort waited: after a
/// partition's leader was down past half the transaction timeout, it can find its sequence
/// numbers out of step with the broker once the leader is back (OUT_OF_ORDER_SEQUENCE_NUMBER,
/// seen in one CI run of `cluster::a_partition_without_a_leader_past_the_transaction_timeout_
/// does_not_fence_the_producer`). The new epoch fences every write of the old producer and the
/// coordinator aborts its open transaction, of which no commit was asked. Any other refusal
/// (a fenced producer: another one has our transactional id) is still fatal.
pub(super) fn abort_uncommitted(
    producer: &mut ThreadedProducer<DeliveryCounter>,
    cfg: &ProduceConfig,
) -> Result<(), ProduceError> {
    let Err(e) = producer.abort_transaction(Timeout::Never) else {
        return Ok(());
    };
    let why = match txn_error(&e).map(|t| t.code()) {
        Some(RDKafkaErrorCode::InvalidTransactionalState) => {
            "the coordinator has no transaction of ours open to abort (an earlier commit's \
             markers were waiting for a broker)"
        }
        Some(RDKafkaErrorCode::OutOfOrderSequenceNumber) => {
            "the producer lost step with a partition's sequence while its leader was down"
        }
        _ => return Err(ProduceError::Fatal(e)),
    };
    crate::ops::metrics::producer().error("restarted");
    warn!(error = %e, "{why}; starting a new producer");
    *producer = transactional_producer(cfg)?;
    Ok(())
}

/// The open transaction that [`finish_txn`] ends.
pub(super) struct Txn<'a> {
    pub(super) records: &'a [ProducedRecord],
    pub(super) planned_abort: bool,
    pub(super) open: Open,
}

/// How a commit ended, when it did not end the run.
enum Outcome {
    Committed,
    /// An abortable error: the transaction is aborted and its records sent again.
    Resend(String),
    /// A retriable commit error: the same commit is tried again.
    RetryCommit(String),
}

/// Commits (or, as planned, aborts) the open transaction. A transaction that is overdue or
/// hit an abortable error is aborted and its records sent again in a new one. Returns whether
/// it committed.
pub(super) fn finish_txn(
    producer: &mut ThreadedProducer<DeliveryCounter>,
    cfg: &ProduceConfig,
    txn: Txn<'_>,
    summary: &mut ProduceSummary,
) -> Result<bool, ProduceError> {
    let Txn {
        records: batch,
        planned_abort,
        mut open,
    } = txn;
    if planned_abort {
        // Let the records reach the log first, so an aborted transaction leaves aborted data
        // there for read_committed readers to skip, as a real failure would.
        drain(producer, &open);
        abort_uncommitted(producer, cfg)?;
        summary.aborted_txns += 1;
        summary.aborted_records += batch.len() as u64;
        return Ok(false);
    }
    let mut attempt = 1;
    loop {
        let (reason, commit_asked) = match drain(producer, &open) {
            Drained::Delivered => {
                failpoint::hit("before-txn-commit");
                match commit(producer, cfg)? {
                    Outcome::Committed => {
                        summary.committed_txns += 1;
                        summary.committed_records += batch.len() as u64;
                        summary.bytes_committed += batch
                            .iter()
                            .map(|r| (r.key.len() + r.value.len()) as u64)
                            .sum::<u64>();
                        return Ok(true);
                    }
                    Outcome::RetryCommit(e) => {
                        let e = another_attempt(&mut attempt, e)?;
                        crate::ops::metrics::producer().error("retriable");
                        warn!(error = %e, attempt, "commit failed with a retriable error; retrying");
                        continue;
                    }
                    Outcome::Resend(e) => (e, true),
                }
            }
            Drained::Overdue => (
                format!(
                    "records still unacknowledged after half the transaction timeout ({:?})",
                    open.overdue_after
                ),
                false,
            ),
        };
        let reason = another_attempt(&mut attempt, reason)?;
        crate::ops::metrics::producer().error("abortable");
        warn!(error = %reason, attempt, "transaction must be aborted; sending it again");
        if commit_asked {
            abort_after_commit(producer)?;
        } else {
            abort_uncommitted(producer, cfg)?;
        }
        summary.retried_txns += 1;
        producer.begin_transaction().map_err(ProduceError::Fatal)?;
        open = Open::now(cfg);
        if let Err(e) = send_records(producer, &cfg.kafka.topic, batch) {
            warn!(error = %e, "send failed while retrying a transaction");
        }
    }
}

/// Counts one more attempt at the transaction, or gives up after [`MAX_TXN_ATTEMPTS`] with
/// `last`, why the last one failed.
fn another_attempt(attempt: &mut u32, last: String) -> Result<String, ProduceError> {
    if *attempt >= MAX_TXN_ATTEMPTS {
        return Err(ProduceError::RetriesExhausted {
            attempts: *attempt,
            last,
        });
    }
    *attempt += 1;
    Ok(last)
}

/// Commits the transaction whose records have all been acknowledged, and sorts a failure:
/// refused or fatal ends the run, abortable resends, anything else tries the commit again.
fn commit(
    producer: &ThreadedProducer<DeliveryCounter>,
    cfg: &ProduceConfig,
) -> Result<Outcome, ProduceError> {
    let Err(e) = producer.commit_transaction(Timeout::Never) else {
        return Ok(Outcome::Committed);
    };
    if let Some(r) = refused(&e, cfg) {
        return Err(r.into());
    }
    let Some(t) = txn_error(&e) else {
        return Err(ProduceError::Fatal(e));
    };
    if t.is_fatal() {
        return Err(ProduceError::Fatal(e));
    }
    if t.txn_requires_abort() {
        Ok(Outcome::Resend(e.to_string()))
    } else {
        Ok(Outcome::RetryCommit(e.to_string()))
    }
}
