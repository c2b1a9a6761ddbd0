//! Where a newly assigned partition starts: Kafka's commit, checked against this run's
//! identity, and the state store's checkpoint made for exactly that commit.

use super::*;

impl Pipeline {
    /// Decides where a newly assigned partition starts, from Kafka's commit and sled.
    pub fn recover(
        &self,
        partition: i32,
        kafka_commit: Option<(i64, String)>,
    ) -> Result<PartitionState, PipelineError> {
        crate::ops::failpoint::hit("during-recovery");
        let topic = &self.cfg.kafka.topic;
        let mut replaced = None;
        let commit = match kafka_commit {
            None => None,
            Some((offset, meta)) => {
                let parsed = CommitPoint::parse_metadata(&meta).ok_or_else(|| {
                    PipelineError::ForeignCommit {
                        topic: topic.clone(),
                        partition,
                        offset,
                        group: self.cfg.group.clone(),
                        meta: meta.clone(),
                    }
                })?;
                replaced = self.check_commit(partition, &parsed)?;
                Some(CommitPoint {
                    offset,
                    progress: parsed.progress,
                })
            }
        };
        let mut st = self.restart_point(partition, commit);
        st.table_change = replaced.map(|replaced| TableChangeState {
            replaced,
            old_files_until: -1,
            wrote: false,
        });
        Ok(st)
    }

    /// Compares a commit's recorded identity with this run's (I7). Returns the campaign table
    /// the commit named when `--accept-campaigns-change` replaces it.
    fn check_commit(
        &self,
        partition: i32,
        meta: &CommitMeta,
    ) -> Result<Option<String>, PipelineError> {
        let id = &self.sink.identity;
        let (topic, group) = (id.topic.clone(), self.cfg.group.clone());
        if let (Some(committed), Some(current)) = (&meta.topic_id, &id.topic_id) {
            if committed != current {
                return Err(IdentityError::TopicRecreated {
                    topic,
                    group,
                    partition,
                    committed: committed.clone(),
                    current: current.clone(),
                }
                .into());
            }
        }
        if !id.settings.agrees_with(&meta.settings) {
            return Err(IdentityError::SettingsChanged {
                topic,
                group,
                partition,
                committed: meta.settings.clone(),
                current: id.settings.signature(),
            }
            .into());
        }
        match &meta.campaigns_sha256 {
            Some(committed) if *committed != id.campaigns_sha256 => {
                if !self.cfg.accept_campaigns_change {
                    return Err(IdentityError::CampaignsChanged {
                        topic,
                        group,
                        partition,
                        path: self.cfg.campaigns.clone(),
                        committed: committed.clone(),
                        current: id.campaigns_sha256.clone(),
                    }
                    .into());
                }
                warn!(
                    partition,
                    was = %committed,
                    now = %id.campaigns_sha256,
                    "campaign table changed (--accept-campaigns-change): windows that land from \
                     now on use the new table; files already landed keep the old one"
                );
                Ok(Some(committed.clone()))
            }
            _ => Ok(meta.campaigns_replaced.clone()),
        }
    }

    /// The commit metadata for `c`, a commit point of `partition`.
    pub fn commit_metadata(&self, partition: i32, c: &CommitPoint) -> String {
        let replaced = self
            .parts
            .get(&partition)
            .and_then(|st| st.table_change.as_ref())
            .map(|t| t.replaced.as_str());
        c.metadata(&self.sink.identity, replaced)
    }

    /// Where a partition whose commit checked out starts: the sled checkpoint made for exactly
    /// that commit, or a replay from the commit, or the beginning for a new group.
    fn restart_point(&self, partition: i32, commit: Option<CommitPoint>) -> PartitionState {
        let topic = &self.cfg.kafka.topic;
        if let (Some(cp), Some(commit)) = (self.store.load(topic, partition), &commit) {
            let id = &self.sink.identity;
            let same_identity = cp.topic_id == id.topic_id
                && cp.campaigns_sha256.as_ref() == Some(&id.campaigns_sha256);
            if cp.commit == *commit && cp.windows.config() == self.cfg.window && same_identity {
                info!(
                    partition,
                    position = cp.position,
                    committed = commit.offset,
                    "resuming from the state store"
                );
                return PartitionState::from_checkpoint(partition, cp);
            }
            info!(
                partition,
                state_commit = cp.commit.offset,
                kafka_commit = commit.offset,
                "state store disagrees with Kafka's committed offset; rebuilding from Kafka"
            );
        }
        match commit {
            Some(c) => {
                info!(
                    partition,
                    offset = c.offset,
                    "rebuilding from the committed offset"
                );
                let offset = c.offset;
                PartitionState::fresh(partition, self.cfg.window, Some(c), offset)
            }
            None => {
                info!(
                    partition,
                    "no committed offset for this group; starting from the beginning of the log"
                );
                PartitionState::fresh(partition, self.cfg.window, None, -1)
            }
        }
    }
}
