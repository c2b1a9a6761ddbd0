//! Source: the Kafka consumer (read_committed, no auto-commit), its assignments and
//! rebalances, and the poll loop that feeds the pipeline and drives checkpoints and commits.
//! The per-record work runs on a worker thread: see [`feed`].

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::feed::Feed;
use crate::consume::enrich::CampaignTable;
use crate::consume::pipeline::{ConsumeConfig, Pipeline, PipelineError, Totals};
use crate::consume::sink::publish::{remove_stale_temps, STALE_TEMP_AGE};
use crate::consume::state::StateStore;
use crate::ops::kafka::wait_for_topic;
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

/// The consumer's context owns the pipeline, so rebalance callbacks (which run inside `poll`)
/// can load state for new partitions and commit the ones being taken away.
pub struct SourceContext {
    pipeline: Arc<Mutex<Pipeline>>,
    /// Records on their way to the pipeline worker.
    feed: Feed,
    /// The first fatal error raised inside a callback; the poll loop stops on it.
    fatal: Mutex<Option<PipelineError>>,
    /// Each partition's end as the broker last reported it (the last stable offset, which is
    /// what a read_committed reader can reach), and where the fetcher stood at its last
    /// end-of-partition event, from librdkafka's statistics.
    ends: crate::ops::kafka::PartitionEnds,
    /// The topic's ID when the session started; a different one means it was recreated.
    topic_id: Option<String>,
    topic: String,
    /// The group uses the incremental (cooperative) rebalance protocol.
    cooperative: bool,
}

impl SourceContext {
    fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, e: PipelineError) {
        error!(error = %e, "fatal error in a rebalance");
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(e);
    }

    fn assign(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), PipelineError> {
        self.feed.drain()?;
        let mut committed = None;
        for attempt in 1..=10 {
            match consumer.committed_offsets(tpl.clone(), Timeout::After(Duration::from_secs(10))) {
                Ok(c) => {
                    committed = Some(c);
                    break;
                }
                Err(e) => {
                    warn!(error = %e, attempt, "fetching committed offsets failed; retrying");
                    std::thread::sleep(Duration::from_millis(500 * attempt));
                }
            }
        }
        let committed = committed.ok_or_else(|| {
            PipelineError::Recovery(
                "could not fetch the group's committed offsets from Kafka".into(),
            )
        })?;
        // A topic deleted and created again under a running consumer comes back as a new
        // assignment: its records must not continue the old topic's output.
        check_topic_id(consumer.client(), &self.topic, self.topic_id.as_deref())?;
        let mut pipeline = self.pipeline();
        for elem in committed.elements() {
            let kafka_commit = match elem.offset() {
                Offset::Offset(o) => Some((o, elem.metadata().to_string())),
                _ => None,
            };
            let st = pipeline.recover(elem.partition(), kafka_commit)?;
            let start = if st.position >= 0 {
                Offset::Offset(st.position)
            } else {
                Offset::Beginning
            };
            tpl.set_partition_offset(elem.topic(), elem.partition(), start)
                .map_err(|e| PipelineError::Recovery(e.to_string()))?;
            self.ends.forget(elem.partition());
            pipeline.parts.insert(elem.partition(), st);
        }
        info!(partitions = ?pipeline.parts.keys().collect::<Vec<_>>(), "partitions assigned");
        Ok(())
    }

    fn revoke(
        &self,
        consumer: &BaseConsumer<Self>,
        tpl: &TopicPartitionList,
    ) -> Result<(), PipelineError> {
        let partitions: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        // Everything polled from these partitions is processed before they are checkpointed.
        self.feed.drain()?;
        let mut pipeline = self.pipeline();
        let lost = consumer.assignment_lost();
        let result = if lost {
            // Another member owns them now (this one was cut off past its session timeout);
            // a commit would be refused, and the new owner replays from the last one.
            warn!(partitions = ?partitions, "assignment lost; not committing for these partitions");
            Ok(())
        } else {
            match checkpoint_and_commit(&mut pipeline, consumer, Some(&partitions), false) {
                Err(PipelineError::Commit(e)) => {
                    warn!(error = %e, partitions = ?partitions, "commit on revoke failed; the next owner replays from the last commit");
                    Ok(())
                }
                other => other.map(|_| ()),
            }
        };
        for p in &partitions {
            pipeline.parts.remove(p);
            self.ends.forget(*p);
            metrics::consumer().release_partition(*p);
        }
        info!(partitions = ?partitions, lost, "partitions revoked");
        result
    }
}

impl ClientContext for SourceContext {
    fn error(&self, error: KafkaError, reason: &str) {
        crate::ops::kafka::log_client_error(error, reason);
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
        // (Taken from the configuration: librdkafka's rd_kafka_rebalance_protocol() can hang
        // when called from this callback while the consumer closes, librdkafka#4041.)
        let cooperative = self.cooperative;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.assign(consumer, tpl) {
                    self.fail(e);
                    return;
                }
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    self.fail(PipelineError::Recovery(format!(
                        "assigning partitions: {e}"
                    )));
                    return;
                }
                metrics::consumer().process.set_ready(true);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                metrics::consumer().process.set_ready(false);
                if let Err(e) = self.revoke(consumer, tpl) {
                    self.fail(e);
                }
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    warn!(error = %e, "unassign failed");
                }
                // The partitions that stay keep flowing; an eager revoke is followed by an
                // assignment, which sets it again.
                metrics::consumer().process.set_ready(cooperative);
            }
            other => warn!(error = ?other, "unexpected rebalance event"),
        }
    }
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

/// Checkpoints to sled, then commits the resulting offsets (with metadata) to Kafka; with
/// `force`, also when they did not change, so the broker confirms that this instance still
/// belongs to the group's current generation. Returns whether the commit went through (or
/// was not needed).
fn checkpoint_and_commit(
    pipeline: &mut Pipeline,
    consumer: &BaseConsumer<SourceContext>,
    only: Option<&[i32]>,
    force: bool,
) -> Result<bool, PipelineError> {
    let points = pipeline.checkpoint(only)?;
    if points.is_empty() || pipeline.cfg.unsafe_no_durability {
        return Ok(true);
    }
    let unchanged = points
        .iter()
        .all(|(p, c)| pipeline.parts.get(p).and_then(|s| s.committed.as_ref()) == Some(c));
    if unchanged && !force {
        return Ok(true);
    }
    let mut tpl = TopicPartitionList::new();
    for (p, c) in &points {
        tpl.add_partition_offset(&pipeline.cfg.kafka.topic, *p, Offset::Offset(c.offset))
            .map_err(PipelineError::Commit)?;
        if let Some(mut elem) = tpl.find_partition(&pipeline.cfg.kafka.topic, *p) {
            elem.set_metadata(pipeline.commit_metadata(*p, c));
        }
    }
    let timer = metrics::consumer().commit.start_timer();
    let result = consumer.commit(&tpl, CommitMode::Sync);
    timer.observe_duration();
    match result {
        Ok(()) => {
            crate::ops::failpoint::hit("after-kafka-commit");
            pipeline.committed(&points);
            Ok(true)
        }
        // Nothing is lost by a failed commit: the files and the state store are durable, and
        // Kafka keeps the previous commit, from which a restart replays. So it is retried at
        // the next checkpoint, for a while.
        Err(e) => pipeline.commit_failed(e).map(|()| false),
    }
}

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
        let result = session(&cfg, shutdown, started);
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
fn session(
    cfg: &ConsumeConfig,
    shutdown: &CancellationToken,
    started: Instant,
) -> Result<ConsumeSummary, ConsumeError> {
    let cfg = cfg.clone();
    let table = Arc::new(CampaignTable::load(&cfg.campaigns)?);
    info!(path = %cfg.campaigns.display(), campaigns = table.len(), sha256 = %table.checksum, "campaign table loaded");
    // The broker, the topic and its ID first: nothing is created on disk for a run that
    // cannot reach them.
    let probe: BaseConsumer<crate::ops::kafka::QuietEof> = cfg
        .kafka
        .client_config()
        .create_with_context(crate::ops::kafka::QuietEof)?;
    wait_for_topic(probe.client(), &cfg.kafka)?;
    let topic_id = crate::ops::kafka::current_topic_id(probe.client(), &cfg.kafka)?;
    drop(probe);
    info!(topic = %cfg.kafka.topic, topic_id = topic_id.as_deref().unwrap_or("-"), "topic found");
    let identity = Pipeline::identity(&cfg, &table, topic_id.clone());
    for dir in [&cfg.output_dir, &cfg.rejects_dir] {
        std::fs::create_dir_all(dir).map_err(|source| ConsumeError::Output {
            path: dir.clone(),
            source,
        })?;
        let removed =
            remove_stale_temps(dir, STALE_TEMP_AGE).map_err(|source| ConsumeError::Output {
                path: dir.clone(),
                source,
            })?;
        if removed > 0 {
            info!(dir = %dir.display(), removed, "removed temporary files left by an earlier crash");
        }
        // Before anything lands: the directory holds this topic's output under these settings,
        // or none yet.
        crate::consume::sink::marker::claim(dir, &identity, !cfg.unsafe_no_durability)
            .map_err(PipelineError::from)?;
    }
    metrics::consumer().init_campaigns(&table);
    let store = StateStore::open(&cfg.state_dir)?;
    let topic = cfg.kafka.topic.clone();
    let pipeline = Arc::new(Mutex::new(Pipeline::new(
        cfg.clone(),
        table,
        store,
        identity,
    )));
    let context = SourceContext {
        feed: Feed::start(pipeline.clone()).map_err(ConsumeError::Worker)?,
        pipeline,
        fatal: Mutex::new(None),
        ends: Default::default(),
        topic_id: topic_id.clone(),
        topic: topic.clone(),
        cooperative: cfg.assignment_strategy == crate::cli::AssignmentStrategy::CooperativeSticky,
    };
    let mut client = cfg.kafka.client_config();
    if let Some(id) = &cfg.instance_id {
        client.set("group.instance.id", id);
    }
    let consumer: BaseConsumer<SourceContext> = client
        .set("group.id", &cfg.group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // A committed offset that the log no longer has is an error, never a silent reset.
        .set("auto.offset.reset", "error")
        .set("session.timeout.ms", "10000")
        .set(
            "partition.assignment.strategy",
            cfg.assignment_strategy.as_str(),
        )
        .set("fetch.wait.max.ms", "100")
        // Partitions added to the topic are found within seconds, not librdkafka's default
        // five minutes; a metadata request every 5 s costs the broker next to nothing.
        .set("topic.metadata.refresh.interval.ms", "5000")
        // Partition ends for the lag metric come with these statistics.
        .set("statistics.interval.ms", "1000")
        // When the pre-fetch queue is full, librdkafka stops fetching for this long (1 s by
        // default), which left the pipeline idle for most of every second.
        .set("fetch.queue.backoff.ms", "5")
        .create_with_context(context)?;
    wait_for_topic(consumer.client(), &cfg.kafka)?;
    consumer.subscribe(&[&topic])?;
    info!(topic = %topic, group = %cfg.group, "consuming");

    let mut noisy = crate::ops::kafka::Repeats::new();
    let mut last_size = Instant::now() - Duration::from_secs(5);
    let mut stopped_by_signal = false;
    let mut last_tick = Instant::now();
    let mut last_id_check = Instant::now();
    // Partitions that reported their end but may still have a transaction's records to come.
    let mut eof_pending = std::collections::BTreeSet::new();
    loop {
        if shutdown.is_cancelled() {
            stopped_by_signal = true;
            break;
        }
        let polled = consumer.poll(Duration::from_millis(100));
        let idle_poll = polled.is_none();
        if let Some(e) = consumer
            .context()
            .fatal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            return Err(e.into());
        }
        let feed = &consumer.context().feed;
        // The clock is read once per batch, not once per record.
        let mut batch_sent = false;
        match polled {
            None => {}
            Some(Ok(m)) => {
                eof_pending.remove(&m.partition());
                batch_sent = feed.push(&m)?;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                eof_pending.insert(p);
            }
            Some(Err(e)) => {
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::AutoOffsetReset)
                        | Some(RDKafkaErrorCode::OffsetOutOfRange)
                ) {
                    // A topic deleted and created again starts its offsets over: that is not
                    // retention, and the error says which it was.
                    let ctx = consumer.context();
                    check_topic_id(consumer.client(), &topic, ctx.topic_id.as_deref())?;
                    return Err(PipelineError::Recovery(format!(
                        "the committed offset is no longer in the log ({e}); the records between it \
                         and the log start were deleted by retention before they landed. Landfall \
                         does not reset silently: reset the group's offsets explicitly \
                         (kafka-consumer-groups --reset-offsets) to accept the loss"
                    ))
                    .into());
                }
                if let Some((_, reason)) = consumer.client().fatal_error() {
                    return Err(ConsumeError::KafkaFatal(reason));
                }
                if let Some(repeated) = noisy.admit(&e.to_string()) {
                    warn!(error = %e, repeated, "consumer error; continuing");
                }
            }
        }
        if !(idle_poll || batch_sent || !eof_pending.is_empty()) {
            continue;
        }
        let now = Instant::now();
        if idle_poll || now.duration_since(last_tick) >= Duration::from_millis(200) {
            last_tick = now;
            // From here on the pipeline has seen every record polled so far.
            feed.drain()?;
            // Before anything below commits: the topic is still the one this run started on.
            if now.duration_since(last_id_check) >= TOPIC_ID_CHECK {
                last_id_check = now;
                let id = consumer.context().topic_id.as_deref();
                check_topic_id(consumer.client(), &topic, id)?;
            }
            let mut pipeline = consumer.context().pipeline();
            let mut at_end = Vec::new();
            eof_pending.retain(|p| {
                let Some(st) = pipeline.parts.get(p) else {
                    return false;
                };
                let ends = &consumer.context().ends;
                match crate::ops::kafka::stable_end(&consumer, &topic, *p, ends, st.position) {
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
            // An idle close is the one decision the log does not make (the wall clock does).
            // So it is planned first and recorded as an idle mark in the replay point; a
            // forced commit then makes the mark durable in Kafka and proves that this instance
            // still owns its partitions (the broker refuses a zombie's stale generation). Only
            // then does it land anything. A replay, here or in another instance, repeats the
            // close from the mark.
            if pipeline.plan_idle_closes(now, wall_ms) {
                if checkpoint_and_commit(&mut pipeline, &consumer, None, true)? {
                    pipeline.close_idle()?;
                    crate::ops::failpoint::hit("after-idle-close");
                    checkpoint_and_commit(&mut pipeline, &consumer, None, false)?;
                } else {
                    pipeline.cancel_idle();
                }
            }
            update_lag(&consumer, &pipeline, &topic);
            pipeline.update_gauges(wall_ms);
            if now.duration_since(last_size) >= Duration::from_secs(5) {
                last_size = now;
                metrics::consumer()
                    .state_size
                    .set(pipeline.store.size_on_disk() as i64);
            }
            if pipeline.checkpoint_due(now) {
                checkpoint_and_commit(&mut pipeline, &consumer, None, false)?;
            }
            if cfg.exit_on_idle && pipeline.all_idle() {
                checkpoint_and_commit(&mut pipeline, &consumer, None, false)?;
                info!("every partition is caught up and its windows have landed; exiting");
                break;
            }
        }
    }
    let totals = {
        consumer.context().feed.drain()?;
        let mut pipeline = consumer.context().pipeline();
        checkpoint_and_commit(&mut pipeline, &consumer, None, false)?;
        pipeline.totals.clone()
    };
    leave_group(&consumer);
    Ok(ConsumeSummary {
        totals,
        elapsed: started.elapsed(),
        stopped_by_signal,
    })
}

/// Leaves the group before the client is closed: unsubscribes, then polls until the revoke
/// has run and nothing is assigned. librdkafka 2.12 can hang in close when a cooperative
/// rebalance is under way (librdkafka#4527); with no assignment left, close has nothing to
/// wait for. Records polled meanwhile are dropped: nothing was committed for them.
fn leave_group(consumer: &BaseConsumer<SourceContext>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(50));
        if consumer.assignment().is_ok_and(|a| a.count() == 0) {
            return;
        }
    }
    warn!("partitions still assigned 15 s after leaving the group; closing anyway");
}

/// Consumer lag per partition: the partition's end (from the broker, via statistics) minus
/// the consumer's position.
fn update_lag(consumer: &BaseConsumer<SourceContext>, pipeline: &Pipeline, topic: &str) {
    let Ok(positions) = consumer.position() else {
        return;
    };
    let ends = &consumer.context().ends;
    for (p, st) in &pipeline.parts {
        let Some(end) = ends.end(*p) else { continue };
        let position = positions
            .find_partition(topic, *p)
            .and_then(|e| e.offset().to_raw())
            .filter(|o| *o >= 0)
            .unwrap_or(st.position.max(0));
        st.metrics.lag.set((end - position).max(0));
    }
}
