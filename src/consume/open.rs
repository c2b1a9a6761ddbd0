//! Opening a consume session, in the order that keeps a failed start harmless: the campaign
//! table, then the broker, the topic and its ID (nothing is created on disk for a run that
//! cannot reach them), then the output directories and their markers (before anything lands,
//! each holds this topic's output under these settings, or none yet), the state store, the
//! pipeline and its worker, and last the consumer, subscribed.

use std::sync::{Arc, Mutex};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tracing::{info, warn};

use super::callbacks::SourceContext;
use super::feed::Feed;
use super::source::ConsumeError;
use crate::consume::enrich::CampaignTable;
use crate::consume::pipeline::{ConsumeConfig, Pipeline, PipelineError};
use crate::consume::sink::publish::{remove_stale_temps, STALE_TEMP_AGE};
use crate::consume::sink::{marker, SinkError};
use crate::consume::state::StateStore;
use crate::identity::Identity;
use crate::ops::kafka::{current_topic_id, wait_for_topic_polled, QuietEof};
use crate::ops::metrics;
use crate::store::{Root, StoreError};

/// What a session runs on.
pub(super) struct Opened {
    pub consumer: BaseConsumer<SourceContext>,
    pub pipeline: Arc<Mutex<Pipeline>>,
    pub feed: Feed,
    /// The topic's ID at the start (None when the cluster gives none).
    pub topic_id: Option<String>,
}

pub(super) fn open(cfg: &ConsumeConfig) -> Result<Opened, ConsumeError> {
    let table = Arc::new(CampaignTable::load(&cfg.campaigns)?);
    info!(path = %cfg.campaigns.display(), campaigns = table.len(), sha256 = %table.checksum, "campaign table loaded");
    let probe: BaseConsumer<QuietEof> = cfg.kafka.client_config().create_with_context(QuietEof)?;
    wait_for_topic_polled(&probe, &cfg.kafka)?;
    let topic_id = current_topic_id(probe.client(), &cfg.kafka)?;
    drop(probe);
    info!(topic = %cfg.kafka.topic, topic_id = topic_id.as_deref().unwrap_or("-"), "topic found");
    let identity = Pipeline::identity(cfg, &table, topic_id.clone());
    for root in [&cfg.output, &cfg.rejects] {
        prepare_output(root, &identity, cfg)?;
    }
    metrics::consumer().init_campaigns(&table);
    let store = StateStore::open(&cfg.state_dir)?;
    let pipeline = Arc::new(Mutex::new(Pipeline::new(
        cfg.clone(),
        table,
        store,
        identity,
    )));
    let feed = Feed::start(pipeline.clone()).map_err(ConsumeError::Worker)?;
    let topic = cfg.kafka.topic.clone();
    let cooperative = cfg.assignment_strategy.cooperative();
    let consumer: BaseConsumer<SourceContext> =
        consumer_config(cfg).create_with_context(SourceContext::new(topic.clone(), cooperative))?;
    wait_for_topic_polled(&consumer, &cfg.kafka)?;
    consumer.subscribe(&[&topic])?;
    info!(topic = %topic, group = %cfg.group, "consuming");
    Ok(Opened {
        consumer,
        pipeline,
        feed,
        topic_id,
    })
}

/// Prepares an output directory and claims it for this output (the directory marker, see
/// `sink::marker`). A local one is created, and swept of the temporary files an earlier crash
/// left in it. An object store is first probed: it must refuse to replace an object, or
/// exactly-once cannot hold (unless `--assume-single-writer` says nothing else writes there).
fn prepare_output(
    root: &Root,
    identity: &Identity,
    cfg: &ConsumeConfig,
) -> Result<(), ConsumeError> {
    match root {
        Root::Local(dir) => {
            let output = |source| ConsumeError::Output {
                path: dir.to_path_buf(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(output)?;
            let removed = remove_stale_temps(dir, STALE_TEMP_AGE).map_err(output)?;
            if removed > 0 {
                info!(dir = %dir.display(), removed, "removed temporary files left by an earlier crash");
            }
        }
        Root::Object(store) => match store.probe() {
            Ok(()) => {
                info!(store = %store.url(), "object store enforces create-only-if-absent")
            }
            Err(e @ StoreError::Overwrites { .. }) if cfg.assume_single_writer => {
                warn!(error = %e, "--assume-single-writer: landing anyway, looking up each file before writing it");
            }
            Err(e) => return Err(PipelineError::from(SinkError::from(e)).into()),
        },
    }
    marker::claim(root, identity, !cfg.unsafe_no_durability).map_err(PipelineError::from)?;
    Ok(())
}

/// The consumer's settings: read_committed, offsets committed by Landfall only, and an error
/// (never a silent reset) for a committed offset the log no longer has.
fn consumer_config(cfg: &ConsumeConfig) -> ClientConfig {
    let mut client = cfg.kafka.client_config();
    if let Some(id) = &cfg.instance_id {
        client.set("group.instance.id", id);
    }
    client
        .set("group.id", &cfg.group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "error")
        .set("session.timeout.ms", "10000")
        .set(
            "partition.assignment.strategy",
            cfg.assignment_strategy.as_str(),
        )
        // Partitions added to the topic are found within seconds, not librdkafka's default
        // five minutes; a metadata request every 5 s costs the broker next to nothing.
        .set("topic.metadata.refresh.interval.ms", "5000")
        // Partition ends for the lag metric and "caught up" come with these statistics.
        .set("statistics.interval.ms", "1000");
    // How it fetches, as the bench's bare consumer does; -X changes any of it.
    crate::ops::kafka::fetch_settings(&mut client);
    // Raw properties apply last (the ones that would break exactly-once were refused).
    cfg.kafka.properties.apply(&mut client);
    client
}
