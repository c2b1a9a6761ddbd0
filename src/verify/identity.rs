//! The audit's identity checks (I7), independent of the consumer's: each file's footer against
//! the topic as it is now and the settings of the audit, each row's aggregate against what an
//! aggregate can be, and the campaign tables of the files that make up one window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::consume::window::MAX_SUM_MS;
use crate::identity::{keys, Settings};
use crate::readback::{Footer, WindowFileRow};

/// What the audit holds the files to.
pub(super) struct Evidence {
    /// The topic's ID now; None when the cluster gives none.
    pub topic_id: Option<String>,
    pub settings: Settings,
}

impl Evidence {
    /// Why a file's footer says it is not this topic's output under these settings, if it
    /// does: (discrepancy kind, detail).
    pub fn footer_problem(&self, f: &Footer) -> Option<(&'static str, String)> {
        if let (Some(found), Some(now)) = (f.get(keys::TOPIC_ID), &self.topic_id) {
            if found != now {
                return Some((
                    "topic_id_mismatch",
                    format!(
                        "landed from topic ID {found}, but the topic now has ID {now}: the topic \
                         was deleted and created again, and this file belongs to the old one"
                    ),
                ));
            }
        }
        if let Some(sig) = f.get(keys::SETTINGS) {
            if !self.settings.agrees_with(sig) {
                return Some((
                    "settings_mismatch",
                    format!(
                        "written with settings {sig}, but the audit (and the group) use {}",
                        self.settings.signature()
                    ),
                ));
            }
        }
        None
    }
}

/// What is wrong with a row's aggregate on its own, if anything: an exact aggregate of
/// `count` views has `0 ≤ min ≤ max`, `count·min ≤ sum ≤ count·max`, and a sum that fits
/// `decimal(18,3)`. A sum that overflowed (wrapped negative, say) breaks these.
pub(super) fn aggregate_problem(r: &WindowFileRow) -> Option<String> {
    let a = &r.agg;
    let (count, sum, min, max) = (a.count as i128, a.sum_ms as i128, a.min_ms, a.max_ms);
    let ok = count >= 1
        && 0 <= min
        && min <= max
        && count * min as i128 <= sum
        && sum <= count * max as i128
        && sum <= MAX_SUM_MS as i128;
    (!ok).then(|| {
        format!(
            "campaign {}: count {} with sum {} ms, min {} ms and max {} ms is not an aggregate of \
             views (the sum must lie in count × [min, max] and fit decimal(18,3)): an overflow",
            r.campaign_id, a.count, a.sum_ms, a.min_ms, a.max_ms
        )
    })
}

/// A campaign's network id and name, as a file enriched it.
type Enriched = (Option<i64>, Option<String>);

/// One window file's campaign table and enrichment, for the cross-file check.
struct TableUse {
    path: PathBuf,
    partition: i32,
    offsets: (i64, i64),
    sha: Option<String>,
    replaced: Option<String>,
    /// Campaign id -> (network id, name) as enriched in this file.
    campaigns: BTreeMap<i64, Enriched>,
}

/// The files of each window, by window start, across partitions.
#[derive(Default)]
pub(super) struct Tables {
    by_window: BTreeMap<i64, Vec<TableUse>>,
}

/// A window whose files disagree on the campaign table.
pub(super) struct Mixed {
    pub window_ms: i64,
    pub partition: i32,
    pub path: PathBuf,
    /// The first and last offset of the first file of the window.
    pub offsets: (i64, i64),
    pub detail: String,
    /// The change was made on purpose (`--accept-campaigns-change`) and recorded in the
    /// footers (`landfall.campaigns_replaced_sha256`): not a discrepancy.
    pub accepted: bool,
}

impl Tables {
    pub fn add(
        &mut self,
        path: PathBuf,
        partition: i32,
        start_ms: i64,
        offsets: (i64, i64),
        footer: &Footer,
        rows: &[WindowFileRow],
    ) {
        self.by_window.entry(start_ms).or_default().push(TableUse {
            path,
            partition,
            offsets,
            sha: footer.get(keys::CAMPAIGNS).map(str::to_string),
            replaced: footer.get(keys::CAMPAIGNS_REPLACED).map(str::to_string),
            campaigns: rows
                .iter()
                .map(|r| (r.campaign_id, (r.network_id, r.campaign_name.clone())))
                .collect(),
        });
    }

    /// Every window whose partition files were enriched from different tables (by their
    /// footers' checksums), or that put one campaign in different networks or names.
    pub fn mixed(&self) -> Vec<Mixed> {
        // Every change made with --accept-campaigns-change, as (replaced, new).
        let changes: BTreeSet<(&str, &str)> = self
            .by_window
            .values()
            .flatten()
            .filter_map(|f| Some((f.replaced.as_deref()?, f.sha.as_deref()?)))
            .collect();
        let mut out = Vec::new();
        for (&start, files) in &self.by_window {
            let shas: BTreeSet<&str> = files.iter().filter_map(|f| f.sha.as_deref()).collect();
            let mut problems = Vec::new();
            if shas.len() > 1 {
                let list: Vec<String> = files
                    .iter()
                    .map(|f| {
                        format!(
                            "{} (partition {}): {}",
                            f.path.display(),
                            f.partition,
                            f.sha.as_deref().unwrap_or("no checksum")
                        )
                    })
                    .collect();
                problems.push(format!(
                    "its partition files were enriched from {} campaign tables: {}",
                    shas.len(),
                    list.join("; ")
                ));
            }
            let mut seen: BTreeMap<i64, (&Enriched, &TableUse)> = BTreeMap::new();
            for f in files {
                for (id, enriched) in &f.campaigns {
                    match seen.get(id) {
                        Some((other, of)) if *other != enriched => problems.push(format!(
                            "campaign {id} is network {:?} named {:?} in {}, but network {:?} \
                             named {:?} in {}",
                            other.0,
                            other.1,
                            of.path.display(),
                            enriched.0,
                            enriched.1,
                            f.path.display()
                        )),
                        Some(_) => {}
                        None => {
                            seen.insert(*id, (enriched, f));
                        }
                    }
                }
            }
            if problems.is_empty() {
                continue;
            }
            // On purpose: some file records the change from one of the two tables to the
            // other (partitions switch at their own offsets, so it need not be in this window).
            let accepted = shas.len() == 2 && {
                let mut pair = shas.iter();
                let (a, b) = (pair.next(), pair.next());
                a.zip(b).is_some_and(|(a, b)| {
                    changes.contains(&(*a, *b)) || changes.contains(&(*b, *a))
                })
            };
            let first = &files[0];
            out.push(Mixed {
                window_ms: start,
                partition: first.partition,
                path: first.path.clone(),
                offsets: first.offsets,
                detail: problems.join(". "),
                accepted,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consume::window::Agg;

    fn row(count: u64, sum: i64, min: i64, max: i64) -> WindowFileRow {
        WindowFileRow {
            window_start_us: 0,
            window_end_us: 60_000_000,
            network_id: Some(1),
            campaign_id: 10,
            campaign_name: Some("c".into()),
            agg: Agg {
                count,
                sum_ms: sum,
                min_ms: min,
                max_ms: max,
            },
        }
    }

    #[test]
    fn an_overflowed_sum_is_not_an_aggregate() {
        assert_eq!(aggregate_problem(&row(3, 30, 5, 15)), None);
        assert_eq!(aggregate_problem(&row(1, 7, 7, 7)), None);
        // Wrapped: negative with positive min and max.
        assert!(aggregate_problem(&row(2, -9_000_000_000_000_000_000, 1, 5)).is_some());
        assert!(aggregate_problem(&row(3, 50, 5, 15)).is_some());
        assert!(aggregate_problem(&row(0, 0, 0, 0)).is_some());
        assert!(
            aggregate_problem(&row(1, MAX_SUM_MS + 1, MAX_SUM_MS + 1, MAX_SUM_MS + 1)).is_some()
        );
    }
}
