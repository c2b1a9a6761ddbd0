//! Identity: everything a partition's output depends on besides its log, recorded with every
//! commit and in every file footer, and compared on every restart and on every file found
//! "already there" (invariant I7).
//!
//! - the topic, by its Kafka topic ID (a topic deleted and created again has a new one);
//! - the settings that change what lands, by their signature;
//! - the campaign table, by its SHA-256;
//! - each landed file, by its footer: the above plus partition, window and offsets.
//!
//! A mismatch is never "already there": it names what differs, both values and the way out.

use std::fmt;
use std::path::PathBuf;

use crate::consume::decode::Limits;
use crate::consume::window::WindowConfig;
use crate::readback::Footer;

/// A restart or a running consumer found that something its output depends on changed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "topic {topic:?} was deleted and created again: group {group:?} committed partition \
         {partition} on topic ID {committed}, but the topic now has ID {current}. The commits and \
         the files in the output directory belong to the old topic, and the new topic's records \
         would collide with them. Consume the new topic with a new --group and a new \
         --output-dir and --rejects-dir"
    )]
    TopicRecreated {
        topic: String,
        group: String,
        partition: i32,
        committed: String,
        current: String,
    },
    #[error(
        "topic {topic:?} was deleted and created again while the consumer ran: it had topic ID \
         {was}, and has {now} now. Nothing was committed for the new topic. Consume it with a \
         new --group and a new --output-dir and --rejects-dir"
    )]
    TopicReplaced {
        topic: String,
        was: String,
        now: String,
    },
    #[error(
        "partition {partition} of {topic} was committed by group {group:?} with settings \
         {committed}, but this run has {current}: restore --window-secs, \
         --allowed-lateness-secs, --max-future-skew-secs and --max-duration-secs, or use a new \
         --group with a new --output-dir and --rejects-dir"
    )]
    SettingsChanged {
        topic: String,
        group: String,
        partition: i32,
        committed: String,
        current: String,
    },
    #[error(
        "the campaign table changed: group {group:?} committed partition {partition} of {topic} \
         with a table of SHA-256 {committed}, but {path} has SHA-256 {current}. Restore the \
         table it had (every landed file's footer names it in landfall.campaigns_sha256), or pass \
         --accept-campaigns-change to apply the new table to windows that land from now on \
         (files already landed keep the old one), or start over with a new --group and a new \
         --output-dir and --rejects-dir"
    )]
    CampaignsChanged {
        topic: String,
        group: String,
        partition: i32,
        path: PathBuf,
        committed: String,
        current: String,
    },
}

/// The settings that change what lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    pub window: WindowConfig,
    pub limits: Limits,
}

impl Settings {
    /// `w<size ms>-l<lateness ms>-f<future skew ms>-d<max duration ms>`.
    pub fn signature(&self) -> String {
        format!(
            "w{}-l{}-f{}-d{}",
            self.window.size_ms,
            self.window.lateness_ms,
            self.limits.max_future_skew_ms,
            self.limits.max_duration_ms
        )
    }

    /// Parses a signature. One written before the duration bound existed (`w…-l…-f…`) has no
    /// `max_duration_ms`.
    pub fn parse(sig: &str) -> Option<ParsedSettings> {
        let rest = sig.strip_prefix('w')?;
        let (size, rest) = rest.split_once("-l")?;
        let (lateness, rest) = rest.split_once("-f")?;
        let (skew, duration) = match rest.split_once("-d") {
            Some((s, d)) => (s, Some(d.parse().ok()?)),
            None => (rest, None),
        };
        Some(ParsedSettings {
            window: WindowConfig {
                size_ms: size.parse().ok()?,
                lateness_ms: lateness.parse().ok()?,
            },
            max_future_skew_ms: skew.parse().ok()?,
            max_duration_ms: duration,
        })
    }

    /// Whether output written under `sig` is the output these settings make. A signature from
    /// before the duration bound agrees on the rest alone (the bound only rejects views longer
    /// than it, which such a version counted).
    pub fn agrees_with(&self, sig: &str) -> bool {
        Settings::parse(sig).is_some_and(|p| {
            p.window == self.window
                && p.max_future_skew_ms == self.limits.max_future_skew_ms
                && p.max_duration_ms
                    .is_none_or(|d| d == self.limits.max_duration_ms)
        })
    }
}

/// A parsed settings signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedSettings {
    pub window: WindowConfig,
    pub max_future_skew_ms: i64,
    pub max_duration_ms: Option<i64>,
}

/// What this run's output is made of, besides each partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub topic: String,
    /// None when the cluster gives no topic IDs (Kafka before 2.8).
    pub topic_id: Option<String>,
    pub settings: Settings,
    /// Hex SHA-256 of the campaign table's bytes.
    pub campaigns_sha256: String,
}

/// The footer keys the identity is written under (`landfall.` prefixed).
pub mod keys {
    pub const TOPIC: &str = "topic";
    pub const TOPIC_ID: &str = "topic_id";
    pub const SETTINGS: &str = "settings";
    pub const CAMPAIGNS: &str = "campaigns_sha256";
    /// Written when `--accept-campaigns-change` applied a new table: the one it replaced.
    pub const CAMPAIGNS_REPLACED: &str = "campaigns_replaced_sha256";
}

/// What a file found under an expected name must be, beyond the run's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub kind: FileKind,
    pub partition: i32,
    /// The offset the file was cut at (a window's close, a reject file's cut): a replay cuts
    /// at the same offset.
    pub close_offset: i64,
    /// The first offset this run saw for it. A replay from a commit point may start after the
    /// file's first record, never before it.
    pub first_offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Window { start_ms: i64, end_ms: i64 },
    Rejects,
}

/// One way a found file is not the output this run would write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What differs, as a user would name it ("topic ID", "window settings", ...).
    pub what: &'static str,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its {} is {}, this run's is {}",
            self.what, self.found, self.expected
        )
    }
}

impl Identity {
    /// Checks a found file's footer against what this run would have written there. With
    /// `table_change_accepted`, a file of another campaign table is kept as it is (it landed
    /// before the change). Fields a file of an older version lacks are not held against it.
    pub fn check(
        &self,
        footer: &Footer,
        want: &Expected,
        table_change_accepted: bool,
    ) -> Result<(), Mismatch> {
        let differs = |what, found: &str, expected: String| {
            Err(Mismatch {
                what,
                found: found.to_string(),
                expected,
            })
        };
        let kind = match want.kind {
            FileKind::Window { .. } => "window",
            FileKind::Rejects => "rejects",
        };
        let show = |v: Option<&str>| v.map_or("missing".to_string(), |v| format!("{v:?}"));
        if footer.get("kind") != Some(kind) {
            return differs(
                "kind (landfall.kind)",
                &show(footer.get("kind")),
                format!("{kind:?}"),
            );
        }
        if footer.get(keys::TOPIC) != Some(self.topic.as_str()) {
            return differs(
                "topic",
                &show(footer.get(keys::TOPIC)),
                format!("{:?}", self.topic),
            );
        }
        if let (Some(found), Some(ours)) = (footer.get(keys::TOPIC_ID), &self.topic_id) {
            if found != ours {
                return differs("topic ID", found, ours.clone());
            }
        }
        let int = |key: &str| footer.int(key);
        if int("partition") != Some(want.partition as i64) {
            return differs(
                "partition",
                &show(footer.get("partition")),
                want.partition.to_string(),
            );
        }
        if let Some(sig) = footer.get(keys::SETTINGS) {
            if !self.settings.agrees_with(sig) {
                return differs("window settings", sig, self.settings.signature());
            }
        }
        check_place(footer, want)?;
        match footer.get(keys::CAMPAIGNS) {
            Some(sha) if sha == self.campaigns_sha256 || table_change_accepted => Ok(()),
            found => differs(
                "campaign table (SHA-256)",
                &show(found),
                self.campaigns_sha256.clone(),
            ),
        }
    }
}

/// Where a found file sits in the log: its window, and the offsets it covers.
fn check_place(footer: &Footer, want: &Expected) -> Result<(), Mismatch> {
    let differs = |what, found: &str, expected: String| {
        Err(Mismatch {
            what,
            found: found.to_string(),
            expected,
        })
    };
    let show = |v: Option<&str>| v.map_or("missing".to_string(), |v| format!("{v:?}"));
    let int = |key: &str| footer.int(key);
    if let FileKind::Window { start_ms, end_ms } = want.kind {
        let span = (int("window_start_ms"), int("window_end_ms"));
        if span != (Some(start_ms), Some(end_ms)) {
            return differs(
                "window",
                &format!(
                    "[{}, {})",
                    show(footer.get("window_start_ms")),
                    show(footer.get("window_end_ms"))
                ),
                format!("[{start_ms}, {end_ms})"),
            );
        }
    }
    if int("close_offset") != Some(want.close_offset) {
        return differs(
            "close offset",
            &show(footer.get("close_offset")),
            want.close_offset.to_string(),
        );
    }
    if int("first_offset").is_none_or(|f| f > want.first_offset) {
        return differs(
            "first offset",
            &show(footer.get("first_offset")),
            format!("at most {}", want.first_offset),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            window: WindowConfig {
                size_ms: 60_000,
                lateness_ms: 60_000,
            },
            limits: Limits {
                max_future_skew_ms: 300_000,
                max_duration_ms: 86_400_000,
            },
        }
    }

    #[test]
    fn signatures_round_trip_and_old_ones_agree_on_what_they_name() {
        let s = settings();
        assert_eq!(s.signature(), "w60000-l60000-f300000-d86400000");
        let p = Settings::parse(&s.signature()).unwrap();
        assert_eq!(p.max_duration_ms, Some(86_400_000));
        assert!(s.agrees_with("w60000-l60000-f300000"));
        assert!(!s.agrees_with("w30000-l60000-f300000"));
        assert!(!s.agrees_with("w60000-l60000-f300000-d1000"));
        assert!(!s.agrees_with("garbage"));
    }

    fn footer(pairs: &[(&str, &str)]) -> Footer {
        Footer(
            pairs
                .iter()
                .map(|(k, v)| (format!("landfall.{k}"), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_found_file_must_prove_it_is_this_output() {
        let id = Identity {
            topic: "t".into(),
            topic_id: Some("AAAA".into()),
            settings: settings(),
            campaigns_sha256: "abc".into(),
        };
        let want = Expected {
            kind: FileKind::Window {
                start_ms: 0,
                end_ms: 60_000,
            },
            partition: 1,
            close_offset: 10,
            first_offset: 5,
        };
        let good = [
            ("kind", "window"),
            ("topic", "t"),
            ("topic_id", "AAAA"),
            ("partition", "1"),
            ("settings", "w60000-l60000-f300000-d86400000"),
            ("window_start_ms", "0"),
            ("window_end_ms", "60000"),
            ("close_offset", "10"),
            ("first_offset", "3"),
            ("campaigns_sha256", "abc"),
        ];
        assert_eq!(id.check(&footer(&good), &want, false), Ok(()));
        for (key, bad, what) in [
            ("topic_id", "BBBB", "topic ID"),
            ("partition", "2", "partition"),
            (
                "settings",
                "w30000-l60000-f300000-d86400000",
                "window settings",
            ),
            ("window_end_ms", "30000", "window"),
            ("close_offset", "11", "close offset"),
            ("first_offset", "6", "first offset"),
            ("campaigns_sha256", "def", "campaign table (SHA-256)"),
            ("kind", "rejects", "kind (landfall.kind)"),
        ] {
            let f: Vec<_> = good
                .iter()
                .map(|&(k, v)| (k, if k == key { bad } else { v }))
                .collect();
            let m = id.check(&footer(&f), &want, false).unwrap_err();
            assert_eq!(m.what, what, "{key}");
        }
        let other_table: Vec<_> = good
            .iter()
            .map(|&(k, v)| (k, if k == "campaigns_sha256" { "def" } else { v }))
            .collect();
        assert_eq!(id.check(&footer(&other_table), &want, true), Ok(()));
        assert!(id.check(&Footer::default(), &want, false).is_err());
    }
}
