//! Commit: the one place that orders "landed and durable → state checkpoint → Kafka commit".
//!
//! Everything that lands a file has returned (file and directory fsynced) before any function
//! here runs. Each then checkpoints the partitions' state to sled and flushes it, and only
//! then commits to Kafka the lowest offset still needed, with the partition's progress at that
//! offset and the run's identity as commit metadata. No other module calls the consumer's
//! commit. The poll loop calls these at its tick, on a revoke, on an idle close and at the
//! end of the run; a rebalance callback never does.

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::consume::pipeline::{Pipeline, PipelineError};
use crate::consume::window::{IdleMark, Progress};
use crate::identity::Identity;
use crate::ops::{failpoint, metrics};

/// A commit as Kafka returns it: offset and metadata.
pub type KafkaCommit = (i64, String);

/// Where a replay must start, and the partition's progress just before that offset. This is
/// what the Kafka commit carries (offset, plus metadata).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPoint {
    pub offset: i64,
    pub progress: Progress,
}

const META_PREFIX: &str = "landfall/1";

/// What a Kafka commit's metadata says, besides the offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitMeta {
    pub progress: Progress,
    /// The settings signature (see `identity::Settings`).
    pub settings: String,
    /// The topic ID the commit was made for; None in commits of versions before topic IDs.
    pub topic_id: Option<String>,
    /// The campaign table's SHA-256; None in commits of versions before it was recorded.
    pub campaigns_sha256: Option<String>,
    /// The table `--accept-campaigns-change` replaced, while files of it may still be met.
    pub campaigns_replaced: Option<String>,
}

impl CommitPoint {
    /// The commit metadata string: `landfall/1 wm=<ms> max=<ms> late=<n> sig=<settings>
    /// tid=<topic id> tbl=<campaign table sha256>`, plus ` from=<offset>` after `--start-from`
    /// chose the partition's start, and ` idle=<offset>@<ms>,...` when idle
    /// closes follow the committed offset. Kafka keeps up to 4,096 bytes of it
    /// (`offset.metadata.max.bytes`).
    ///
    /// `replaced` is the campaign table `--accept-campaigns-change` replaced, while a replay
    /// from this commit may still find files landed with it: recorded as ` was=<sha256>`, so a
    /// restart keeps them without the flag.
    pub fn metadata(&self, id: &Identity, replaced: Option<&str>) -> String {
        let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        let mut meta = format!(
            "{META_PREFIX} wm={} max={} late={} sig={}",
            opt(self.progress.watermark_ms),
            opt(self.progress.max_event_ms),
            self.progress.late_total,
            id.settings.signature()
        );
        if let Some(tid) = &id.topic_id {
            meta.push_str(" tid=");
            meta.push_str(tid);
        }
        meta.push_str(" tbl=");
        meta.push_str(&id.campaigns_sha256);
        if let Some(old) = replaced {
            meta.push_str(" was=");
            meta.push_str(old);
        }
        if let Some(start) = self.progress.start_offset {
            meta.push_str(&format!(" from={start}"));
        }
        let marks: Vec<String> = self
            .progress
            .idle_marks
            .iter()
            .map(|m| format!("{}@{}", m.at_offset, m.watermark_ms))
            .collect();
        if !marks.is_empty() {
            meta.push_str(" idle=");
            meta.push_str(&marks.join(","));
        }
        meta
    }

    /// Parses commit metadata written by `metadata`.
    pub fn parse_metadata(meta: &str) -> Option<CommitMeta> {
        let mut parts = meta.split_whitespace();
        if parts.next()? != META_PREFIX {
            return None;
        }
        let mut progress = Progress::default();
        let (mut sig, mut topic_id, mut table, mut was) = (None, None, None, None);
        for part in parts {
            let (k, v) = part.split_once('=')?;
            let opt = |v: &str| -> Option<Option<i64>> {
                if v == "-" {
                    Some(None)
                } else {
                    v.parse().ok().map(Some)
                }
            };
            match k {
                "wm" => progress.watermark_ms = opt(v)?,
                "max" => progress.max_event_ms = opt(v)?,
                "late" => progress.late_total = v.parse().ok()?,
                "sig" => sig = Some(v.to_string()),
                "tid" => topic_id = Some(v.to_string()),
                "tbl" => table = Some(v.to_string()),
                "was" => was = Some(v.to_string()),
                "from" => progress.start_offset = Some(v.parse().ok()?),
                "idle" => {
                    for m in v.split(',') {
                        let (at, wm) = m.split_once('@')?;
                        progress.idle_marks.push(IdleMark {
                            at_offset: at.parse().ok()?,
                            watermark_ms: wm.parse().ok()?,
                        });
                    }
                }
                _ => {}
            }
        }
        Some(CommitMeta {
            progress,
            settings: sig?,
            topic_id,
            campaigns_sha256: table,
            campaigns_replaced: was,
        })
    }
}

/// Checkpoints to sled, then commits the resulting offsets (with metadata) to Kafka; with
/// `force`, also when they did not change, so the broker confirms that this instance still
/// belongs to the group's current generation. Returns whether the commit went through (or
/// was not needed).
pub fn checkpoint_and_commit<C: ConsumerContext>(
    pipeline: &mut Pipeline,
    consumer: &BaseConsumer<C>,
    only: Option<&[i32]>,
    force: bool,
) -> Result<bool, PipelineError> {
    let points = pipeline.checkpoint(only)?;
    if points.is_empty() || !pipeline.durable() {
        return Ok(true);
    }
    let unchanged = points
        .iter()
        .all(|(p, c)| pipeline.last_committed(*p) == Some(c));
    if unchanged && !force {
        return Ok(true);
    }
    let topic = pipeline.topic().to_string();
    let mut tpl = TopicPartitionList::new();
    for (p, c) in &points {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(c.offset))
            .map_err(PipelineError::Commit)?;
        if let Some(mut elem) = tpl.find_partition(&topic, *p) {
            elem.set_metadata(pipeline.commit_metadata(*p, c));
        }
    }
    let timer = metrics::consumer().commit.start_timer();
    let result = consumer.commit(&tpl, CommitMode::Sync);
    timer.observe_duration();
    match result {
        Ok(()) => {
            failpoint::hit("after-kafka-commit");
            pipeline.committed(&points);
            Ok(true)
        }
        // Nothing is lost by a failed commit: the files and the state store are durable, and
        // Kafka keeps the previous commit, from which a restart replays. So it is retried at
        // the next checkpoint, for a while.
        Err(e) => pipeline.commit_failed(e).map(|()| false),
    }
}

/// Commits where partitions the group never committed start (`--start-from` latest or a
/// time), before anything is read from them, with metadata that records the start. Returns
/// the commits as recovery takes them: offset and metadata.
pub fn commit_start<C: ConsumerContext>(
    pipeline: &Pipeline,
    consumer: &BaseConsumer<C>,
    starts: &[(i32, i64)],
) -> Result<Vec<(i32, KafkaCommit)>, PipelineError> {
    let topic = pipeline.topic().to_string();
    let mut tpl = TopicPartitionList::new();
    let mut commits = Vec::new();
    for &(p, offset) in starts {
        let point = CommitPoint {
            offset,
            progress: Progress {
                start_offset: Some(offset),
                ..Progress::default()
            },
        };
        let meta = pipeline.commit_metadata(p, &point);
        tpl.add_partition_offset(&topic, p, Offset::Offset(offset))
            .map_err(PipelineError::Commit)?;
        if let Some(mut elem) = tpl.find_partition(&topic, p) {
            elem.set_metadata(meta.clone());
        }
        commits.push((p, (offset, meta)));
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(PipelineError::Commit)?;
    failpoint::hit("after-start-commit");
    Ok(commits)
}

/// An idle close is the one decision the log does not make (the wall clock does). So it is
/// planned first and recorded as an idle mark in the replay point; a forced commit then makes
/// the mark durable in Kafka and proves that this instance still owns its partitions (the
/// broker refuses a zombie's stale generation). Only then does it land anything. A replay,
/// here or in another instance, repeats the close from the mark.
pub fn close_idle_fenced<C: ConsumerContext>(
    pipeline: &mut Pipeline,
    consumer: &BaseConsumer<C>,
    now: std::time::Instant,
    wall_ms: i64,
) -> Result<(), PipelineError> {
    if !pipeline.plan_idle_closes(now, wall_ms) {
        return Ok(());
    }
    if checkpoint_and_commit(pipeline, consumer, None, true)? {
        pipeline.close_idle()?;
        failpoint::hit("after-idle-close");
        checkpoint_and_commit(pipeline, consumer, None, false)?;
    } else {
        pipeline.cancel_idle();
    }
    Ok(())
}

/// Partitions are being taken away: what was processed of them is checkpointed and committed,
/// so the next owner starts where this one stopped. When the assignment was `lost` (this
/// instance was cut off past its session timeout), another member owns them already and a
/// commit would be refused: the new owner replays from the last one. A failed commit loses
/// nothing either (the next owner replays), so only other errors are returned.
pub fn on_revoke<C: ConsumerContext>(
    pipeline: &mut Pipeline,
    consumer: &BaseConsumer<C>,
    partitions: &[i32],
    lost: bool,
) -> Result<(), PipelineError> {
    if lost {
        warn!(partitions = ?partitions, "assignment lost; not committing for these partitions");
        return Ok(());
    }
    match checkpoint_and_commit(pipeline, consumer, Some(partitions), false) {
        Err(PipelineError::Commit(e)) => {
            warn!(error = %e, partitions = ?partitions, "commit on revoke failed; the next owner replays from the last commit");
            Ok(())
        }
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(topic_id: Option<&str>) -> Identity {
        Identity {
            topic: "t".into(),
            topic_id: topic_id.map(str::to_string),
            settings: crate::identity::Settings {
                window: crate::consume::window::WindowConfig {
                    size_ms: 60_000,
                    lateness_ms: 60_000,
                },
                limits: crate::consume::decode::Limits {
                    max_future_skew_ms: 300_000,
                    max_duration_ms: 86_400_000,
                },
            },
            campaigns_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn commit_metadata_round_trips() {
        let cp = CommitPoint {
            offset: 10,
            progress: Progress {
                max_event_ms: Some(1_726_210_201_456),
                watermark_ms: Some(1_726_210_141_456),
                late_total: 3,
                idle_marks: vec![
                    IdleMark {
                        at_offset: 12,
                        watermark_ms: 1_726_210_150_000,
                    },
                    IdleMark {
                        at_offset: 15,
                        watermark_ms: 1_726_210_170_000,
                    },
                ],
                start_offset: Some(7),
            },
        };
        let id = identity(Some("q1L3pG5hQ0yRz4Ww1b2c3A"));
        let meta = cp.metadata(&id, Some(&"cd".repeat(32)));
        assert!(meta.len() < 4096, "{meta}");
        assert_eq!(
            CommitPoint::parse_metadata(&meta),
            Some(CommitMeta {
                progress: cp.progress.clone(),
                settings: id.settings.signature(),
                topic_id: id.topic_id.clone(),
                campaigns_sha256: Some(id.campaigns_sha256.clone()),
                campaigns_replaced: Some("cd".repeat(32)),
            })
        );
        let empty = CommitPoint {
            offset: 0,
            progress: Progress::default(),
        };
        let parsed = CommitPoint::parse_metadata(&empty.metadata(&identity(None), None)).unwrap();
        assert_eq!(parsed.progress, Progress::default());
        assert_eq!(parsed.topic_id, None);
        // A commit of a version before topic IDs and table checksums.
        let old =
            CommitPoint::parse_metadata("landfall/1 wm=- max=- late=0 sig=w60000-l60000-f300000")
                .unwrap();
        assert_eq!((old.topic_id, old.campaigns_sha256), (None, None));
        assert!(CommitPoint::parse_metadata("someone else's").is_none());
    }
}
