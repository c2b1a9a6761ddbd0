//! Source: the Kafka consumer (read_committed, no auto-commit), its assignments and
//! rebalances, and the poll loop that feeds the pipeline and drives checkpoints and commits.
//!
//! The rebalance callback only records what librdkafka reports; the poll loop carries it out
//! right after the `poll` that delivered it: it drains the worker, recovers or commits, and
//! only then assigns or gives the partitions back. The per-record work runs on a worker
//! thread (see `feed`); everything that commits goes through `commit`.
//!
//! Here: the session, its loop and its ticks. A turn of the loop (the fetch queue, then the
//! consumer's queue) is in `poll`; carrying out a rebalance is in `rebalance`.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::callbacks::SourceContext;
use super::commit;
use super::feed::{lock, Feed};
use super::fetch::FetchQueue;
use super::open;
use crate::consume::pipeline::{ConsumeConfig, Pipeline, PipelineError, Totals};
use crate::ops::kafka::{stable_end, Repeats};
use crate::ops::metrics;
use poll::PollNotes;

mod poll;
mod rebalance;

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
/// How long one turn of the poll loop waits when nothing comes.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Events (or records not routed to the fetch queue) taken from the consumer's queue per turn
/// of the poll loop at most.
const EVENTS_PER_TURN: usize = 1024;
/// Records taken from the fetch queue per turn of the poll loop at most, so the consumer's
/// queue (a rebalance) and the ticks wait at most this long.
const READ_MOST: usize = 4096;

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
    /// The routed partitions' records (see `fetch`). Declared before `consumer`: it is
    /// dropped first.
    fetch: FetchQueue,
    /// The partitions routed to `fetch`.
    routed: BTreeSet<i32>,
    /// The last turn of the poll loop took records from the consumer's own queue (a routing
    /// that missed, see `fetch`): the next one waits there, not on the fetch queue.
    records_on_main: bool,
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
            fetch: FetchQueue::new(&parts.consumer),
            routed: BTreeSet::new(),
            records_on_main: false,
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
            let (taken, batch_sent) = self.poll_once()?;
            let idle_poll = taken == 0;
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
