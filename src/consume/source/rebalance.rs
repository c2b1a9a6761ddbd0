//! Carrying out the rebalances the callback recorded: an assignment is recovered (from
//! Kafka's commit and the state store) and routed to the fetch queue before it is assigned;
//! a revoke is checkpointed and committed before the partitions are given back.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{info, warn};

use super::{check_topic_id, Session};
use crate::consume::callbacks::Rebalance;
use crate::consume::commit;
use crate::consume::feed::lock;
use crate::consume::pipeline::PipelineError;
use crate::consume::start::{self, StartFrom};
use crate::ops::metrics;

impl Session {
    /// Carries out the rebalances the callback recorded during the last poll, in order.
    pub(super) fn carry_out_rebalances(&mut self) -> Result<(), PipelineError> {
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
        drop(pipeline);
        for elem in tpl.elements() {
            if self
                .fetch
                .route(&self.consumer, elem.topic(), elem.partition())
            {
                self.routed.insert(elem.partition());
            }
        }
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
                self.routed.remove(p);
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
}
