//! Property tests of the window logic against a simple reference model.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const CFG: WindowConfig = WindowConfig {
    size_ms: 60_000,
    lateness_ms: 60_000,
};

/// (event_ms, campaign, duration_ms): event times wander forward with jitter and some far-back
/// stragglers, so windows open, close and receive late records.
fn events() -> impl Strategy<Value = Vec<(i64, i64, i64)>> {
    prop::collection::vec(
        (0i64..40_000, -150_000i64..5_000, 0i64..3, 1_000i64..100_000),
        1..400,
    )
    .prop_map(|steps| {
        let mut clock = 1_726_210_140_000i64;
        steps
            .into_iter()
            .map(|(step, jitter, campaign, dur)| {
                clock += step;
                (clock + jitter, campaign * 10, dur)
            })
            .collect()
    })
}

type Windows = BTreeMap<i64, BTreeMap<i64, Agg>>;

/// The reference: an event is late when its window ended at or before the greatest earlier
/// event time minus the lateness. Everything else is counted in its window.
fn reference(events: &[(i64, i64, i64)]) -> (Windows, BTreeSet<usize>) {
    let mut windows: Windows = BTreeMap::new();
    let mut late = BTreeSet::new();
    let mut max: Option<i64> = None;
    for (i, &(t, c, d)) in events.iter().enumerate() {
        let start = t.div_euclid(CFG.size_ms) * CFG.size_ms;
        if max.is_some_and(|m| start + CFG.size_ms <= m - CFG.lateness_ms) {
            late.insert(i);
            continue;
        }
        windows
            .entry(start)
            .or_default()
            .entry(c)
            .or_insert_with(Agg::empty)
            .try_add(d)
            .then_some(())
            .expect("the reference's durations fit");
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    (windows, late)
}

fn run(
    w: &mut PartitionWindows,
    events: &[(i64, i64, i64)],
    from: usize,
    landed: &mut BTreeMap<i64, ClosedWindow>,
    late: &mut BTreeSet<usize>,
) {
    for (i, &(t, c, d)) in events.iter().enumerate().skip(from) {
        let (placement, closed) = w.on_event(i as i64, t, c, d);
        if let Placement::Late { .. } = placement {
            late.insert(i);
        }
        for cw in closed {
            // Landing is idempotent: an existing file is kept, as the sink does.
            landed.entry(cw.start_ms).or_insert(cw);
        }
    }
    for cw in w.advance_watermark(i64::MAX / 2, events.len() as i64) {
        landed.entry(cw.start_ms).or_insert(cw);
    }
}

proptest! {
    #[test]
    fn windows_match_the_reference(events in events()) {
        let (want, want_late) = reference(&events);
        let mut w = PartitionWindows::new(CFG, Progress::default());
        let mut landed = BTreeMap::new();
        let mut late = BTreeSet::new();
        run(&mut w, &events, 0, &mut landed, &mut late);
        let got: Windows = landed.into_iter().map(|(s, cw)| (s, cw.by_campaign)).collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(late, want_late);
    }

    /// A crash at any record, then a replay from the replay point that a commit at that moment
    /// would have recorded, lands the same windows with the same contents.
    #[test]
    fn replay_from_the_commit_point_lands_the_same_windows(
        events in events(),
        crash_at in any::<prop::sample::Index>(),
    ) {
        let mut reference_run = PartitionWindows::new(CFG, Progress::default());
        let mut want = BTreeMap::new();
        let mut want_late = BTreeSet::new();
        run(&mut reference_run, &events, 0, &mut want, &mut want_late);

        // First run up to the crash.
        let crash = crash_at.index(events.len());
        let mut first = PartitionWindows::new(CFG, Progress::default());
        let mut landed = BTreeMap::new();
        let mut late = BTreeSet::new();
        for (i, &(t, c, d)) in events.iter().enumerate().take(crash) {
            let (placement, closed) = first.on_event(i as i64, t, c, d);
            if let Placement::Late { .. } = placement {
                late.insert(i);
            }
            for cw in closed {
                landed.insert(cw.start_ms, cw);
            }
        }
        let (replay_from, progress) = first
            .oldest_open()
            .unwrap_or((crash as i64, first.progress()));
        // Restart: only the commit point survives, plus the landed files.
        let mut second = PartitionWindows::new(CFG, progress);
        late.retain(|i| (*i as i64) < replay_from);
        run(&mut second, &events, replay_from as usize, &mut landed, &mut late);
        prop_assert_eq!(landed, want);
        prop_assert_eq!(late, want_late);
    }
}

#[test]
fn a_window_closes_when_the_watermark_reaches_its_end() {
    let mut w = PartitionWindows::new(CFG, Progress::default());
    let t0 = 1_726_210_140_000; // 06:49:00
    assert!(w.on_event(0, t0 + 1_000, 10, 5_000).1.is_empty());
    // 06:50:59.999 - 60 s is before 06:50:00: the 06:49 window stays open.
    assert!(w.on_event(1, t0 + 119_999, 10, 5_000).1.is_empty());
    let (_, closed) = w.on_event(2, t0 + 120_000, 20, 7_000);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].start_ms, t0);
    assert_eq!(closed[0].close_offset, 3);
    assert_eq!(closed[0].by_campaign[&10].count, 1);
    let (placement, _) = w.on_event(3, t0 + 59_000, 10, 1_000);
    assert_eq!(
        placement,
        Placement::Late {
            window_start_ms: t0,
            lateness_ms: 0
        }
    );
    assert_eq!(w.progress().late_total, 1);
}

/// A view that would take its campaign's sum past what `decimal(18,3)` holds is not counted,
/// does not move the watermark and leaves no empty window behind.
#[test]
fn a_sum_that_would_overflow_is_refused_not_wrapped() {
    let mut w = PartitionWindows::new(CFG, Progress::default());
    let t = 1_726_210_140_000;
    let (p, _) = w.on_event(0, t, 10, MAX_SUM_MS - 5);
    assert_eq!(p, Placement::Counted { window_start_ms: t });
    let (p, closed) = w.on_event(1, t + 1, 10, 10);
    assert_eq!(p, Placement::Overflow { window_start_ms: t });
    assert!(closed.is_empty());
    assert_eq!(w.progress().max_event_ms, Some(t));
    // Another campaign in the same window still counts.
    let (p, _) = w.on_event(2, t + 2, 20, 10);
    assert_eq!(p, Placement::Counted { window_start_ms: t });
    let cells = &w.open_windows().next().unwrap().by_campaign;
    assert_eq!(cells[&10].sum_ms, MAX_SUM_MS - 5);
    assert_eq!(cells[&10].count, 1);
    // A single view too long for any sum opens no window.
    let later = t + 60_000;
    let (p, _) = w.on_event(3, later, 10, MAX_SUM_MS + 1);
    assert_eq!(
        p,
        Placement::Overflow {
            window_start_ms: later
        }
    );
    assert_eq!(w.open_windows().count(), 1);
}
