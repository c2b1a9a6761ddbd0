//! Per-campaign aggregates of view durations, exact (integer milliseconds), so partial
//! aggregates merge without rounding.

use serde::{Deserialize, Serialize};

/// The largest sum a window file can hold: `decimal(18,3)` seconds, in milliseconds.
pub const MAX_SUM_MS: i64 = 999_999_999_999_999_999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agg {
    pub count: u64,
    pub sum_ms: i64,
    pub min_ms: i64,
    pub max_ms: i64,
}

impl Agg {
    pub fn empty() -> Self {
        Agg {
            count: 0,
            sum_ms: 0,
            min_ms: i64::MAX,
            max_ms: i64::MIN,
        }
    }

    /// Adds one view of `duration_ms` (0 ≤ duration ≤ `MAX_SUM_MS`). Returns false, and
    /// changes nothing, if the sum would pass `MAX_SUM_MS` (what the file's `decimal(18,3)`
    /// holds) or the count would overflow.
    #[must_use]
    pub fn try_add(&mut self, duration_ms: i64) -> bool {
        let (Some(count), Some(sum)) = (
            self.count.checked_add(1),
            self.sum_ms
                .checked_add(duration_ms)
                .filter(|s| (0..=MAX_SUM_MS).contains(s)),
        ) else {
            return false;
        };
        self.count = count;
        self.sum_ms = sum;
        self.min_ms = self.min_ms.min(duration_ms);
        self.max_ms = self.max_ms.max(duration_ms);
        true
    }

    /// Merges partial aggregates of one (window, campaign). Saturates rather than wraps: the
    /// query side merges sums of several files, each of which fits.
    pub fn merge(&mut self, other: &Agg) {
        self.count = self.count.saturating_add(other.count);
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.min_ms = self.min_ms.min(other.min_ms);
        self.max_ms = self.max_ms.max(other.max_ms);
    }

    /// Mean duration in seconds.
    pub fn avg_secs(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms as f64 / self.count as f64 / 1000.0
        }
    }
}
