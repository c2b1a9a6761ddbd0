//! Rejects: a record that cannot be counted (undecodable, invalid, late, or one whose sum
//! would overflow) is kept whole, with the reason, until the next window boundary cuts the
//! buffered rejects into a file (see `sink`). Nothing here knows about Parquet or Kafka.

use serde::{Deserialize, Serialize};

use crate::consume::decode::RejectReason;
use crate::consume::window::{IdleMark, Progress};

/// A record bound for the rejects dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectRecord {
    pub offset: i64,
    #[serde(with = "reason_label")]
    pub reason: RejectReason,
    pub detail: String,
    pub event_ms: Option<i64>,
    pub lateness_ms: Option<i64>,
    pub record_ts_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

mod reason_label {
    use super::RejectReason;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(r: &RejectReason, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(r.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RejectReason, D::Error> {
        let s = String::deserialize(d)?;
        RejectReason::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown reason {s}")))
    }
}

/// Rejects not yet landed, and the progress just before the first of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectBuffer {
    pub items: Vec<RejectRecord>,
    pub progress_before_first: Option<Progress>,
}

impl RejectBuffer {
    pub fn push(&mut self, r: RejectRecord, progress_before: Progress) {
        if self.items.is_empty() {
            self.progress_before_first = Some(progress_before);
        }
        self.items.push(r);
    }

    pub fn first(&self) -> Option<(i64, Progress)> {
        match (self.items.first(), &self.progress_before_first) {
            (Some(r), Some(p)) => Some((r.offset, p.clone())),
            _ => None,
        }
    }

    /// See `PartitionWindows::mark_idle`.
    pub fn mark_idle(&mut self, mark: IdleMark) {
        if let Some(p) = &mut self.progress_before_first {
            p.idle_marks.push(mark);
        }
    }

    pub fn unmark_idle(&mut self, mark: IdleMark) {
        if let Some(p) = &mut self.progress_before_first {
            p.idle_marks.retain(|m| *m != mark);
        }
    }

    pub fn take(&mut self) -> Vec<RejectRecord> {
        self.progress_before_first = None;
        std::mem::take(&mut self.items)
    }
}
