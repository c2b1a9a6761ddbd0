//! Per-campaign aggregates of view durations, exact (integer milliseconds), so partial
//! aggregates merge without rounding.

use serde::{Deserialize, Serialize};

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

    pub fn add(&mut self, duration_ms: i64) {
        self.count += 1;
        self.sum_ms += duration_ms;
        self.min_ms = self.min_ms.min(duration_ms);
        self.max_ms = self.max_ms.max(duration_ms);
    }

    pub fn merge(&mut self, other: &Agg) {
        self.count += other.count;
        self.sum_ms += other.sum_ms;
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
