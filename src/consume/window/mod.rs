//! Windowing, pure: tumbling event-time windows per partition, the watermark, lateness, and
//! the replay point that a restart needs. No I/O and no clock reads; "now" and event times are
//! arguments.
//!
//! One `PartitionWindows` follows one Kafka partition in offset order. Its evolution is a
//! deterministic function of its starting `Progress` and the records it is fed, which is what
//! makes a replay from a committed offset produce the same windows as the first run.

mod agg;
pub use agg::{Agg, MAX_SUM_MS};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Window size and allowed lateness, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub lateness_ms: i64,
}

impl WindowConfig {
    /// Start of the window holding `event_ms`.
    pub fn start_of(&self, event_ms: i64) -> i64 {
        event_ms.div_euclid(self.size_ms) * self.size_ms
    }
}

/// The part of a partition's state that decides how later records are treated. Saved with
/// every committed offset, so a replay from that offset starts from exactly this.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Greatest event time seen so far.
    pub max_event_ms: Option<i64>,
    /// Windows ending at or before this have closed. Usually `max_event_ms - lateness`, but an
    /// idle partition may advance it by the wall clock.
    pub watermark_ms: Option<i64>,
    /// Late records seen so far on this partition.
    pub late_total: u64,
    /// Idle closes that happened *after* this point, in offset order. The wall clock that
    /// decided them is not in the log, so a replay from here repeats them from this list.
    #[serde(default)]
    pub idle_marks: Vec<IdleMark>,
    /// Where the group began reading this partition, when `--start-from` chose a point past
    /// the log's beginning: records before it are not part of the output. Carried unchanged
    /// in every commit, so `verify` knows where the output begins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_offset: Option<i64>,
}

/// An idle close: at partition position `at_offset` the watermark was moved to
/// `watermark_ms` by the wall clock, and what that closed landed (with the buffered rejects)
/// at that offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdleMark {
    pub at_offset: i64,
    pub watermark_ms: i64,
}

/// A window that has not closed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenWindow {
    pub start_ms: i64,
    /// Offset of the first record counted in this window.
    pub first_offset: i64,
    /// The partition's progress just before `first_offset`: the replay point if this is the
    /// oldest open window.
    pub progress_before: Progress,
    pub by_campaign: BTreeMap<i64, Agg>,
}

/// A window that the watermark has passed: ready to land.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_offset: i64,
    /// Records at offsets below this were counted; a record of this window at or above it is
    /// late.
    pub close_offset: i64,
    /// The event-time watermark at close (greatest event time minus lateness). For a window
    /// closed by an idle partition's wall clock this is still the event-time value, so the
    /// file does not depend on when the idle close ran.
    pub watermark_ms: i64,
    pub closed_by_idle: bool,
    pub late_total: u64,
    pub by_campaign: BTreeMap<i64, Agg>,
}

/// What happened to one valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Counted {
        window_start_ms: i64,
    },
    /// Its window had closed: the watermark was `lateness_ms` past the window's end.
    Late {
        window_start_ms: i64,
        lateness_ms: i64,
    },
    /// Counting it would overflow its campaign's exact sum in the window: rejected, and the
    /// watermark does not move (as for any invalid record).
    Overflow {
        window_start_ms: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionWindows {
    cfg: WindowConfig,
    progress: Progress,
    open: BTreeMap<i64, OpenWindow>,
}

impl PartitionWindows {
    pub fn new(cfg: WindowConfig, progress: Progress) -> Self {
        PartitionWindows {
            cfg,
            progress,
            open: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> WindowConfig {
        self.cfg
    }

    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    pub fn watermark_ms(&self) -> Option<i64> {
        self.progress.watermark_ms
    }

    /// Records an idle close about to happen at `mark.at_offset`: in the replay point of every
    /// open window, so a replay from any of them repeats it, and as pending in the live
    /// progress, so a state saved before the close carries it out when resumed. The close
    /// itself is `take_due_mark` and `advance_watermark`.
    pub fn mark_idle(&mut self, mark: IdleMark) {
        for w in self.open.values_mut() {
            w.progress_before.idle_marks.push(mark);
        }
        self.progress.idle_marks.push(mark);
    }

    /// Takes back the mark of an idle close that did not happen.
    pub fn unmark_idle(&mut self, mark: IdleMark) {
        for w in self.open.values_mut() {
            w.progress_before.idle_marks.retain(|m| *m != mark);
        }
        self.progress.idle_marks.retain(|m| *m != mark);
    }

    /// In a replay, the next idle close the first run made at or before `offset`: it must be
    /// repeated before the record at `offset` is processed.
    pub fn take_due_mark(&mut self, offset: i64) -> Option<IdleMark> {
        let first = self.progress.idle_marks.first()?;
        (first.at_offset <= offset).then(|| self.progress.idle_marks.remove(0))
    }

    pub fn open_windows(&self) -> impl Iterator<Item = &OpenWindow> {
        self.open.values()
    }

    /// The oldest open window's first offset and the progress just before it.
    pub fn oldest_open(&self) -> Option<(i64, Progress)> {
        self.open
            .values()
            .min_by_key(|w| w.first_offset)
            .map(|w| (w.first_offset, w.progress_before.clone()))
    }

    /// Feeds one valid event at `offset`. Returns where it went, and the windows that its
    /// event time closed (in window order), each closed at `offset + 1`.
    pub fn on_event(
        &mut self,
        offset: i64,
        event_ms: i64,
        campaign_id: i64,
        duration_ms: i64,
    ) -> (Placement, Vec<ClosedWindow>) {
        let start = self.cfg.start_of(event_ms);
        let end = start + self.cfg.size_ms;
        if let Some(wm) = self.progress.watermark_ms {
            if end <= wm {
                self.progress.late_total += 1;
                return (
                    Placement::Late {
                        window_start_ms: start,
                        lateness_ms: wm - end,
                    },
                    Vec::new(),
                );
            }
        }
        let before = &self.progress;
        let window = self.open.entry(start).or_insert_with(|| OpenWindow {
            start_ms: start,
            first_offset: offset,
            progress_before: before.clone(),
            by_campaign: BTreeMap::new(),
        });
        let cell = window
            .by_campaign
            .entry(campaign_id)
            .or_insert_with(Agg::empty);
        if !cell.try_add(duration_ms) {
            // Leave no empty cell or window behind (a fresh one takes any valid duration, but
            // that is decode's bound, not this code's).
            if cell.count == 0 {
                window.by_campaign.remove(&campaign_id);
            }
            if window.by_campaign.is_empty() {
                self.open.remove(&start);
            }
            return (
                Placement::Overflow {
                    window_start_ms: start,
                },
                Vec::new(),
            );
        }

        if self.progress.max_event_ms.is_none_or(|m| event_ms > m) {
            self.progress.max_event_ms = Some(event_ms);
            let wm = event_ms - self.cfg.lateness_ms;
            if self.progress.watermark_ms.is_none_or(|w| wm > w) {
                self.progress.watermark_ms = Some(wm);
            }
        }
        let closed = self.close_due(offset + 1, false);
        (
            Placement::Counted {
                window_start_ms: start,
            },
            closed,
        )
    }

    /// Advances the watermark to `watermark_ms` if that is later (an idle partition, by the
    /// wall clock), closing what it passes at `close_offset` (the partition's position).
    pub fn advance_watermark(&mut self, watermark_ms: i64, close_offset: i64) -> Vec<ClosedWindow> {
        if self
            .progress
            .watermark_ms
            .is_some_and(|w| w >= watermark_ms)
        {
            return Vec::new();
        }
        self.progress.watermark_ms = Some(watermark_ms);
        self.close_due(close_offset, true)
    }

    fn close_due(&mut self, close_offset: i64, by_idle: bool) -> Vec<ClosedWindow> {
        let Some(wm) = self.progress.watermark_ms else {
            return Vec::new();
        };
        let event_wm = self
            .progress
            .max_event_ms
            .map_or(wm, |m| (m - self.cfg.lateness_ms).min(wm));
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + self.cfg.size_ms > wm {
                break;
            }
            let w = entry.remove();
            closed.push(ClosedWindow {
                start_ms: w.start_ms,
                end_ms: w.start_ms + self.cfg.size_ms,
                first_offset: w.first_offset,
                close_offset,
                watermark_ms: event_wm,
                closed_by_idle: by_idle,
                late_total: self.progress.late_total,
                by_campaign: w.by_campaign,
            });
        }
        closed
    }
}

#[cfg(test)]
mod tests;
