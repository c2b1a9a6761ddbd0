//! Source of test traffic: seeded random view events with the original campaign weights, plus
//! knobs for out-of-order, late, invalid and unknown-campaign records.
//!
//! The generator is pure: the caller passes "now", so a simulated clock and a fixed seed give
//! byte-identical records on every run.

use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

use crate::event::ViewEvent;

/// The original producer's campaign weights: `(campaign_id, weight)`.
pub const CAMPAIGN_WEIGHTS: [(i64, u32); 14] = [
    (10, 1),
    (20, 1),
    (30, 1),
    (40, 2),
    (50, 2),
    (60, 3),
    (70, 3),
    (80, 3),
    (90, 2),
    (100, 2),
    (110, 1),
    (120, 1),
    (130, 1),
    (140, 1),
];

/// How far in the future a generated "far future" record is dated.
pub const FAR_FUTURE_MS: i64 = 24 * 3600 * 1000;

/// How a generated record was made, so tests can predict what the consumer does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Valid,
    /// Dated well behind the stream, so the window it belongs to has normally closed.
    Late,
    UnknownCampaign,
    Invalid(InvalidKind),
}

/// The kinds of invalid record the generator can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvalidKind {
    MalformedJson,
    MissingField,
    WrongType,
    EndBeforeStart,
    FarFuture,
}

impl InvalidKind {
    pub const ALL: [InvalidKind; 5] = [
        InvalidKind::MalformedJson,
        InvalidKind::MissingField,
        InvalidKind::WrongType,
        InvalidKind::EndBeforeStart,
        InvalidKind::FarFuture,
    ];
}

/// One record ready for Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// The Kafka record timestamp: the (possibly simulated) clock at generation.
    pub timestamp_ms: i64,
    pub kind: RecordKind,
}

/// The generator's knobs. Fractions are probabilities in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Events are dated up to this many seconds before "now", uniformly.
    pub out_of_order_secs: u64,
    pub late_fraction: f64,
    /// A late record is dated this many seconds (uniform in the range) before "now".
    pub late_by_secs: (u64, u64),
    pub invalid_fraction: f64,
    pub unknown_campaign_fraction: f64,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 0,
            out_of_order_secs: 0,
            late_fraction: 0.0,
            late_by_secs: (300, 900),
            invalid_fraction: 0.0,
            unknown_campaign_fraction: 0.0,
        }
    }
}

pub struct Generator {
    cfg: GeneratorConfig,
    rng: ChaCha8Rng,
    campaigns: WeightedIndex<u32>,
    json: Vec<u8>,
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let campaigns = WeightedIndex::new(CAMPAIGN_WEIGHTS.iter().map(|(_, w)| *w))
            .expect("the campaign weights are a non-empty list of positive constants");
        Generator {
            cfg,
            rng,
            campaigns,
            json: Vec::with_capacity(192),
        }
    }

    /// Draws a campaign id with the original weights.
    pub fn campaign(&mut self) -> i64 {
        CAMPAIGN_WEIGHTS[self.campaigns.sample(&mut self.rng)].0
    }

    /// Draws a probability decision from the same seeded stream (used for transaction aborts).
    pub fn decide(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random_bool(p.min(1.0))
    }

    /// Makes the next record, as of `now_ms`.
    pub fn next_record(&mut self, now_ms: i64) -> ProducedRecord {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes);
        let view_id = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .hyphenated()
            .to_string();

        let roll: f64 = self.rng.random();
        let (kind, end_ms) = if roll < self.cfg.invalid_fraction {
            let k = InvalidKind::ALL[self.rng.random_range(0..InvalidKind::ALL.len())];
            (RecordKind::Invalid(k), now_ms - self.jitter_ms())
        } else if roll < self.cfg.invalid_fraction + self.cfg.late_fraction {
            let (lo, hi) = self.cfg.late_by_secs;
            let back = self.rng.random_range(lo * 1000..=hi.max(lo) * 1000) as i64;
            (RecordKind::Late, now_ms - back)
        } else if roll
            < self.cfg.invalid_fraction
                + self.cfg.late_fraction
                + self.cfg.unknown_campaign_fraction
        {
            (RecordKind::UnknownCampaign, now_ms - self.jitter_ms())
        } else {
            (RecordKind::Valid, now_ms - self.jitter_ms())
        };

        let mut event = ViewEvent {
            view_id,
            start_ms: 0,
            end_ms,
            banner_id: self.rng.random_range(1..=1000),
            campaign_id: self.campaign(),
        };
        // Uniform over 1..=100 s, to the millisecond.
        let duration_ms = self.rng.random_range(1_000..=100_000i64);
        event.start_ms = event.end_ms - duration_ms;
        if kind == RecordKind::UnknownCampaign {
            // Multiples of ten past the table's last id, so they look like real ids.
            event.campaign_id = self.rng.random_range(15..=99) * 10;
        }

        self.json.clear();
        match kind {
            RecordKind::Invalid(k) => self.write_invalid(k, &mut event, now_ms),
            _ => event.write_json(&mut self.json),
        }
        ProducedRecord {
            key: event.view_id.into_bytes(),
            value: self.json.clone(),
            timestamp_ms: now_ms,
            kind,
        }
    }

    fn jitter_ms(&mut self) -> i64 {
        if self.cfg.out_of_order_secs == 0 {
            0
        } else {
            self.rng.random_range(0..=self.cfg.out_of_order_secs * 1000) as i64
        }
    }

    fn write_invalid(&mut self, kind: InvalidKind, event: &mut ViewEvent, now_ms: i64) {
        let out = &mut self.json;
        match kind {
            InvalidKind::MalformedJson => {
                event.write_json(out);
                let cut = self.rng.random_range(1..out.len() / 2);
                out.truncate(out.len() - cut);
            }
            InvalidKind::MissingField => {
                event.write_json(out);
                let text = String::from_utf8_lossy(out).into_owned();
                let field = if self.rng.random_bool(0.5) {
                    format!(",\"campaignId\":{}", event.campaign_id)
                } else {
                    format!(",\"bannerId\":{}", event.banner_id)
                };
                out.clear();
                out.extend_from_slice(text.replacen(&field, "", 1).as_bytes());
            }
            InvalidKind::WrongType => {
                event.write_json(out);
                let text = String::from_utf8_lossy(out).into_owned();
                let from = format!("\"campaignId\":{}", event.campaign_id);
                let to = format!("\"campaignId\":\"c{}\"", event.campaign_id);
                out.clear();
                out.extend_from_slice(text.replacen(&from, &to, 1).as_bytes());
            }
            InvalidKind::EndBeforeStart => {
                std::mem::swap(&mut event.start_ms, &mut event.end_ms);
                event.write_json(out);
            }
            InvalidKind::FarFuture => {
                let duration = event.end_ms - event.start_ms;
                event.end_ms = now_ms + FAR_FUTURE_MS;
                event.start_ms = event.end_ms - duration;
                event.write_json(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn campaign_frequencies_match_the_original_weights() {
        let mut g = Generator::new(GeneratorConfig {
            seed: 7,
            ..Default::default()
        });
        let draws = 100_000;
        let mut seen: HashMap<i64, u32> = HashMap::new();
        for _ in 0..draws {
            *seen.entry(g.campaign()).or_default() += 1;
        }
        let total: u32 = CAMPAIGN_WEIGHTS.iter().map(|(_, w)| w).sum();
        assert_eq!(seen.len(), CAMPAIGN_WEIGHTS.len());
        for (id, w) in CAMPAIGN_WEIGHTS {
            let expected = draws as f64 * w as f64 / total as f64;
            let got = seen[&id] as f64;
            // Binomial standard deviation is at most ~93 here; 5% relative (>= 185 draws for
            // the rarest campaign, so about 4 sigma) keeps the test deterministic in spirit:
            // with the fixed seed it is exact, and any seed passes with overwhelming odds.
            let tolerance = expected * 0.05;
            assert!(
                (got - expected).abs() <= tolerance,
                "campaign {id}: {got} draws, expected {expected:.0} ± {tolerance:.0}"
            );
        }
    }

    #[test]
    fn same_seed_same_bytes() {
        let cfg = GeneratorConfig {
            seed: 42,
            out_of_order_secs: 30,
            late_fraction: 0.1,
            invalid_fraction: 0.1,
            unknown_campaign_fraction: 0.1,
            ..Default::default()
        };
        let mut a = Generator::new(cfg.clone());
        let mut b = Generator::new(cfg);
        for i in 0..1000 {
            assert_eq!(a.next_record(i * 100), b.next_record(i * 100));
        }
    }

    #[test]
    fn valid_records_follow_the_data_contract() {
        let mut g = Generator::new(GeneratorConfig {
            seed: 3,
            ..Default::default()
        });
        let now = 1_726_210_201_456;
        for _ in 0..1000 {
            let r = g.next_record(now);
            let v: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
            assert_eq!(v["viewId"].as_str().unwrap().as_bytes(), r.key.as_slice());
            assert_eq!(v["endTimestamp"], "2024-09-13T06:50:01.456");
            let banner = v["bannerId"].as_i64().unwrap();
            assert!((1..=1000).contains(&banner));
            let start = chrono::NaiveDateTime::parse_from_str(
                v["startTimestamp"].as_str().unwrap(),
                "%Y-%m-%dT%H:%M:%S%.3f",
            )
            .unwrap()
            .and_utc()
            .timestamp_millis();
            assert!((1_000..=100_000).contains(&(now - start)));
        }
    }

    #[test]
    fn every_invalid_kind_is_produced() {
        let mut g = Generator::new(GeneratorConfig {
            seed: 9,
            invalid_fraction: 1.0,
            ..Default::default()
        });
        let mut kinds = std::collections::HashSet::new();
        for i in 0..500 {
            kinds.insert(g.next_record(i).kind);
        }
        assert_eq!(kinds.len(), InvalidKind::ALL.len());
    }
}
