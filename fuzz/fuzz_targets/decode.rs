//! Decode: any bytes and any record timestamp give an event or a typed reject, never a panic;
//! the fast path reads every text it takes as serde_json does; an event keeps the bounds
//! decode promises, and windowing it cannot overflow.
#![no_main]

use landfall::consume::decode::{decode, fast_path_agrees, Limits, MAX_EVENT_MS, MIN_EVENT_MS};
use landfall::consume::window::{PartitionWindows, Placement, Progress, WindowConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the record timestamp's form, the next eight give it.
    let (ts, value) = match data {
        [0, rest @ ..] => (None, rest),
        [_, a, b, c, d, e, f, g, h, rest @ ..] => {
            (Some(i64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h])), rest)
        }
        _ => (None, data),
    };
    if let Ok(text) = std::str::from_utf8(value) {
        assert!(fast_path_agrees(text), "the fast path and serde_json differ on {text:?}");
    }
    let limits = Limits {
        max_future_skew_ms: 300_000,
        max_duration_ms: 86_400_000,
    };
    let Ok(ev) = decode(Some(value), ts, &limits) else {
        return;
    };
    assert!(ev.start_ms <= ev.end_ms);
    assert!(ev.end_ms - ev.start_ms <= limits.max_duration_ms);
    assert!((MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ev.start_ms));
    assert!((MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ev.end_ms));
    let cfg = WindowConfig {
        size_ms: 60_000,
        lateness_ms: 60_000,
    };
    let mut w = PartitionWindows::new(cfg, Progress::default());
    for offset in 0..3 {
        let (placement, _) = w.on_event(offset, ev.end_ms, ev.campaign_id, ev.end_ms - ev.start_ms);
        assert!(matches!(placement, Placement::Counted { .. }));
    }
});
