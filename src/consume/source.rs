//! Source: the Kafka consumer (read_committed, no auto-commit), its assignments and
//! rebalances, and the poll loop that feeds the pipeline and drives checkpoints and commits.
//!
//! The rebalance callback only records what librdkafka reports; the poll loop carries it out
//! right after the `poll` that delivered it: it drains the worker, recovers or commits, and
//! only then assigns or gives the partitions back. The per-record work runs on a worker
//! thread (see `feed`); everything that commits goes through `commit`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::callbacks::{Rebalance, SourceContext};
use super::commit;
use super::feed::{lock, Feed};
use super::open;
use super::start::{self, StartFrom};
use crate::consume::pipeline::{ConsumeConfig, Pipeline, PipelineError, Totals};
use crate::ops::kafka::{refusal, stable_end, Doing, KafkaSettings, Repeats};
use crate::ops::metrics;

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(transparent)]
    Setup(#[from] crate::ops::kafka::KafkaSetupError),
    #[error(transparent)]
    Enrich(#[from] crate::consume::enrich::EnrichError),
    #[error(transparent)]
    State(#[from] crate::consume::state::StateError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error("Kafka consumer: {0}")]
    Kafka(#[from] KafkaError),
    #[error(
        "the Kafka client failed for good: {0}. If another consumer uses the same \
         --instance-id, give each instance its own"
    )]
    KafkaFatal(String),
    #[error("starting the pipeline worker thread: {0}")]
    Worker(std::io::Error),
    #[error("output directory {path}: {source}")]
    Output {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Errors if `topic`'s ID is no longer `known`: it was deleted and created again. A lookup
/// that fails, or finds no topic (deleted, not created yet), proves nothing and passes.
fn check_topic_id<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    known: Option<&str>,
) -> Result<(), PipelineError> {
    let Some(known) = known else {
        return Ok(());
    };
    match crate::ops::kafka::topic_id(client, topic, Duration::from_secs(5)) {
        crate::ops::kafka::TopicIdLookup::Found(now) if now != known => {
            Err(crate::identity::IdentityError::TopicReplaced {
                topic: topic.to_string(),
                was: known.to_string(),
                now,
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// How often the poll loop checks that the topic is still the one it started with.
const TOPIC_ID_CHECK: Duration = Duration::from_secs(1);
/// How often the poll loop drains the worker and decides (checkpoint, commit, idle close).
const TICK: Duration = Duration::from_millis(200);

/// How a consume run ended.
#[derive(Debug, Clone)]
pub struct ConsumeSummary {
    pub totals: Totals,
    pub elapsed: Duration,
    pub stopped_by_signal: bool,
}

/// Runs the consumer until `shutdown` is cancelled or, with `exit_on_idle`, until every
/// partition is caught up, its idle windows have landed and its offsets are committed.
/// Blocking: call from a thread that may block.
pub fn run(
    cfg: ConsumeConfig,
    shutdown: &CancellationToken,
) -> Result<ConsumeSummary, ConsumeError> {
    let started = Instant::now();
    let mut restarts = 0;
    loop {
        let session_started = Instant::now();
        let result = Session::open(&cfg).and_then(|s| s.run(shutdown, started));
        metrics::consumer().process.set_ready(false);
        match result {
            // librdkafka gives up on a client for good after some errors; a static member
            // fenced by its own instance id after a broker restart is the common one. Files
            // and commits are durable, so a new client resumes from the last commit.
            Err(ConsumeError::KafkaFatal(reason)) if restarts < MAX_CLIENT_RESTARTS => {
                if session_started.elapsed() > Duration::from_secs(600) {
                    restarts = 0;
                }
                restarts += 1;
                metrics::consumer().client_restarts.inc();
                warn!(%reason, restarts, "the Kafka client failed for good; starting a new one from the last commit");
                std::thread::sleep(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// How many times in a row `run` replaces a Kafka client that failed for good. More than
/// that usually means two instances share one `--instance-id`.
const MAX_CLIENT_RESTARTS: u32 = 5;

/// One Kafka client's life: recovery, the poll loop, the final commit.
struct Session {
    consumer: BaseConsumer<SourceContext>,
    pipeline: Arc<Mutex<Pipeline>>,
    /// Records on their way to the pipeline worker.
    feed: Feed,
    /// The topic's ID when the session started; a different one means it was recreated.
    topic_id: Option<String>,
    exit_on_idle: bool,
    notes: PollNotes,
    last_tick: Instant,
    last_id_check: Instant,
    last_size: Instant,
}

impl Drop for Session {
    fn drop(&mut self) {
        // From here on nobody carries out what the callback records: librdkafka's close
        // must get its answer from the callback itself.
        self.consumer
            .context()
            .attended
            .store(false, Ordering::SeqCst);
    }
}

impl Session {
    fn open(cfg: &ConsumeConfig) -> Result<Session, ConsumeError> {
        let parts = open::open(cfg)?;
        // The callbacks run inside `poll`, which only this session calls, from here on.
        let ctx = parts.consumer.context();
        ctx.attended.store(true, Ordering::SeqCst);
        let now = Instant::now();
        Ok(Session {
            consumer: parts.consumer,
            pipeline: parts.pipeline,
            feed: parts.feed,
            topic_id: parts.topic_id,
            exit_on_idle: cfg.exit_on_idle,
            notes: PollNotes {
                eof_pending: BTreeSet::new(),
                noisy: Repeats::new(),
                kafka: cfg.kafka.clone(),
                group: cfg.group.clone(),
                start_from: cfg.start_from,
            },
            last_tick: now,
            last_id_check: now,
            last_size: now - Duration::from_secs(5),
        })
    }

    fn topic(&self) -> &str {
        &self.consumer.context().topic
    }

    fn run(
        mut self,
        shutdown: &CancellationToken,
        started: Instant,
    ) -> Result<ConsumeSummary, ConsumeError> {
        let mut stopped_by_signal = false;
        loop {
            if shutdown.is_cancelled() {
                stopped_by_signal = true;
                break;
            }
            let polled = self.consumer.poll(Duration::from_millis(100));
            let idle_poll = polled.is_none();
            let batch_sent = match polled {
                Some(polled) => {
                    let topic_id = self.topic_id.as_deref();
                    self.notes
                        .take(&self.consumer, &self.feed, topic_id, polled)?
                }
                None => false,
            };
            self.carry_out_rebalances()?;
            if !(idle_poll || batch_sent || !self.notes.eof_pending.is_empty()) {
                continue;
            }
            let now = Instant::now();
            if (idle_poll || now.duration_since(self.last_tick) >= TICK) && self.tick(now)? {
                break;
            }
        }
        let totals = {
            self.feed.drain()?;
            let mut pipeline = lock(&self.pipeline);
            commit::checkpoint_and_commit(&mut pipeline, &self.consumer, None, false)?;
            pipeline.totals().clone()
        };
        self.leave_group();
        Ok(ConsumeSummary {
            totals,
            elapsed: started.elapsed(),
            stopped_by_signal,
        })
    }

    /// The periodic decisions, once the worker has processed everything polled: caught-up
    /// partitions, idle closes, gauges, checkpoint and commit. Returns whether the run is done
    /// (`--exit-on-idle` and everything landed and committed).
    fn tick(&mut self, now: Instant) -> Result<bool, ConsumeError> {
        self.last_tick = now;
        self.notes.refused(None)?;
        // From here on the pipeline has seen every record polled so far.
        self.feed.drain()?;
        // Before anything below commits: the topic is still the one this run started on.
        if now.duration_since(self.last_id_check) >= TOPIC_ID_CHECK {
            self.last_id_check = now;
            check_topic_id(
                self.consumer.client(),
                self.topic(),
                self.topic_id.as_deref(),
            )?;
        }
        let consumer = &self.consumer;
        let mut pipeline = lock(&self.pipeline);
        let mut at_end = Vec::new();
        self.notes.eof_pending.retain(|p| {
            let Some(position) = pipeline.position(*p) else {
                return false;
            };
            let ends = &consumer.context().ends;
            match stable_end(consumer, &consumer.context().topic, *p, ends, position) {
                Some(at) => {
                    at_end.push((*p, at));
                    false
                }
                None => true,
            }
        });
        for (p, at) in at_end {
            pipeline.caught_up(p, at, now)?;
        }
        let wall_ms = chrono::Utc::now().timestamp_millis();
        commit::close_idle_fenced(&mut pipeline, consumer, now, wall_ms)?;
        update_lag(consumer, &pipeline);
        pipeline.update_gauges(wall_ms);
        if now.duration_since(self.last_size) >= Duration::from_secs(5) {
            self.last_size = now;
            metrics::consumer()
                .state_size
                .set(pipeline.state_size() as i64);
        }
        if pipeline.checkpoint_due(now) {
            commit::checkpoint_and_commit(&mut pipeline, consumer, None, false)?;
        }
        if self.exit_on_idle && pipeline.all_idle() {
            commit::checkpoint_and_commit(&mut pipeline, consumer, None, false)?;
            info!("every partition is caught up and its windows have landed; exiting");
            return Ok(true);
        }
        Ok(false)
    }

    /// Carries out the rebalances the callback recorded during the last poll, in order.
    fn carry_out_rebalances(&mut self) -> Result<(), PipelineError> {
        for rebalance in self.consumer.context().take_rebalances() {
            match rebalance {
                Rebalance::Assign(mut tpl) => self.assign(&mut tpl)?,
                Rebalance::Revoke { tpl, lost } => self.revoke(&tpl, lost)?,
            }
        }
        Ok(())
    }

    /// Recovers newly assigned partitions (from Kafka's commit and the state store), then
    /// assigns them at their restart offsets.
    fn assign(&mut self, tpl: &mut TopicPartitionList) -> Result<(), PipelineError> {
        self.feed.drain()?;
        let committed = self.committed_offsets(tpl)?;
        // A topic deleted and created again under a running consumer comes back as a new
        // assignment: its records must not continue the old topic's output.
        check_topic_id(
            self.consumer.client(),
            self.topic(),
            self.topic_id.as_deref(),
        )?;
        let mut started = self.commit_starts(&committed)?;
        let ctx = self.consumer.context();
        let mut pipeline = lock(&self.pipeline);
        for elem in committed.elements() {
            let kafka_commit = match elem.offset() {
                Offset::Offset(o) => Some((o, elem.metadata().to_string())),
                _ => started.remove(&elem.partition()),
            };
            let st = pipeline.recover(elem.partition(), kafka_commit)?;
            let start = if st.position >= 0 {
                Offset::Offset(st.position)
            } else {
                Offset::Beginning
            };
            tpl.set_partition_offset(elem.topic(), elem.partition(), start)
                .map_err(|source| PipelineError::StartOffset {
                    partition: elem.partition(),
                    source,
                })?;
            ctx.ends.forget(elem.partition());
            self.notes.eof_pending.remove(&elem.partition());
            pipeline.assign(elem.partition(), st);
        }
        info!(partitions = ?pipeline.partitions(), "partitions assigned");
        let assigned = if ctx.cooperative {
            self.consumer.incremental_assign(tpl)
        } else {
            self.consumer.assign(tpl)
        };
        assigned.map_err(PipelineError::Assign)?;
        metrics::consumer().process.set_ready(true);
        Ok(())
    }

    /// Resolves and commits where the partitions without a committed offset start, unless
    /// that is the log's beginning (`--start-from`); says so where a commit makes it moot.
    fn commit_starts(
        &self,
        committed: &TopicPartitionList,
    ) -> Result<BTreeMap<i32, commit::KafkaCommit>, PipelineError> {
        let from = self.notes.start_from;
        let (fresh, resumed): (Vec<_>, Vec<_>) = committed
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .partition(|(_, o)| !matches!(o, Offset::Offset(_)));
        let fresh: Vec<i32> = fresh.into_iter().map(|(p, _)| p).collect();
        if from != StartFrom::Earliest && !resumed.is_empty() {
            let resumed: Vec<i32> = resumed.into_iter().map(|(p, _)| p).collect();
            info!(partitions = ?resumed, "--start-from does not apply: the group has committed offsets for these partitions");
        }
        if fresh.is_empty() {
            return Ok(BTreeMap::new());
        }
        let starts =
            start::resolve(&self.consumer, self.topic(), &fresh, from).map_err(|source| {
                PipelineError::StartOffset {
                    partition: fresh[0],
                    source,
                }
            })?;
        let Some(starts) = starts else {
            return Ok(BTreeMap::new());
        };
        info!(starts = ?starts, start_from = ?from, "the group starts these partitions here; committed before reading");
        let pipeline = lock(&self.pipeline);
        Ok(commit::commit_start(&pipeline, &self.consumer, &starts)?
            .into_iter()
            .collect())
    }

    /// The group's committed offsets for `tpl`, retried for a while: the coordinator may be
    /// moving while the group rebalances.
    fn committed_offsets(
        &self,
        tpl: &TopicPartitionList,
    ) -> Result<TopicPartitionList, PipelineError> {
        for attempt in 1..=10 {
            let timeout = Timeout::After(Duration::from_secs(10));
            match self.consumer.committed_offsets(tpl.clone(), timeout) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    self.notes.refused(Some(&e))?;
                    warn!(error = %e, attempt, "fetching committed offsets failed; retrying");
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                }
            }
        }
        Err(PipelineError::CommittedOffsetsUnavailable)
    }

    /// Checkpoints and commits what was processed of revoked partitions (see
    /// `commit::on_revoke`), lets go of them, then hands them back to librdkafka.
    fn revoke(&mut self, tpl: &TopicPartitionList, lost: bool) -> Result<(), PipelineError> {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        // Everything polled from these partitions is processed before they are checkpointed.
        let drained = self.feed.drain();
        let ctx = self.consumer.context();
        let result = drained.and_then(|()| {
            let mut pipeline = lock(&self.pipeline);
            commit::on_revoke(&mut pipeline, &self.consumer, &partitions, lost)
        });
        {
            let mut pipeline = lock(&self.pipeline);
            for p in &partitions {
                pipeline.release(*p);
                ctx.ends.forget(*p);
                self.notes.eof_pending.remove(p);
                metrics::consumer().release_partition(*p);
            }
        }
        info!(partitions = ?partitions, lost, "partitions revoked");
        ctx.unassign(&self.consumer, tpl);
        // The partitions that stay keep flowing; an eager revoke is followed by an
        // assignment, which sets it again.
        metrics::consumer().process.set_ready(ctx.cooperative);
        result
    }

    /// Leaves the group before the client is closed: unsubscribes, then polls (carrying out
    /// the revoke) until nothing is assigned. librdkafka 2.12 can hang in close when a
    /// cooperative rebalance is under way (librdkafka#4527); with no assignment left, close
    /// has nothing to wait for. Records polled meanwhile are dropped: nothing was committed
    /// for them.
    fn leave_group(&mut self) {
        self.consumer.unsubscribe();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let _ = self.consumer.poll(Duration::from_millis(50));
            // The run's result is settled by now: a revoke that fails here is only logged.
            if let Err(e) = self.carry_out_rebalances() {
                warn!(error = %e, "giving partitions back while leaving the group");
            }
            if self.consumer.assignment().is_ok_and(|a| a.count() == 0) {
                return;
            }
        }
        warn!("partitions still assigned 15 s after leaving the group; closing anyway");
    }
}

/// What the poll loop notes between ticks.
struct PollNotes {
    /// Partitions that reported their end but may still have a transaction's records to come.
    /// An end belongs to one assignment: a revoke and an assignment forget it, or the next
    /// tick would judge a partition recovered from an older commit by where the previous
    /// assignment stood (librdkafka keeps that position, and its statistics that end, until
    /// the old fetcher has stopped), and skip the records between.
    eof_pending: BTreeSet<i32>,
    noisy: Repeats,
    /// For naming a refusal: the brokers, the topic, the user, the group.
    kafka: KafkaSettings,
    group: String,
    start_from: StartFrom,
}

impl PollNotes {
    /// A refusal by the brokers (a missing ACL, a failed login) behind `e`, or noted by the
    /// client since start-up: no retry can fix it.
    fn refused(&self, e: Option<&KafkaError>) -> Result<(), PipelineError> {
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
        polled: Result<BorrowedMessage<'_>, KafkaError>,
    ) -> Result<bool, ConsumeError> {
        match polled {
            Ok(m) => {
                self.eof_pending.remove(&m.partition());
                Ok(feed.push(&m)?)
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

/// Consumer lag per partition: the partition's end (from the broker, via statistics) minus
/// the consumer's position.
fn update_lag(consumer: &BaseConsumer<SourceContext>, pipeline: &Pipeline) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let ctx = consumer.context();
    pipeline.update_lag(|p, position| {
        let end = ctx.ends.end(p)?;
        let position = positions
            .find_partition(&ctx.topic, p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(position.max(0));
        Some((end - position).max(0))
    });
}
