//! Decode: record bytes to a `ViewEvent`, or a typed reason why not.

use std::borrow::Cow;

use serde::Deserialize;

use crate::event::ViewEvent;

mod scan;

/// Why a record went to the rejects dataset instead of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    EmptyValue,
    NotUtf8,
    MalformedJson,
    MissingField,
    WrongType,
    BadTimestamp,
    EndBeforeStart,
    TooFarInFuture,
    DurationTooLong,
    /// Adding the view to its window would overflow the window's exact sum.
    AggregateOverflow,
    Late,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::EmptyValue,
        RejectReason::NotUtf8,
        RejectReason::MalformedJson,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::BadTimestamp,
        RejectReason::EndBeforeStart,
        RejectReason::TooFarInFuture,
        RejectReason::DurationTooLong,
        RejectReason::AggregateOverflow,
        RejectReason::Late,
    ];

    /// The label used in the rejects dataset and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyValue => "empty_value",
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::EndBeforeStart => "end_before_start",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::DurationTooLong => "duration_too_long",
            RejectReason::AggregateOverflow => "aggregate_overflow",
            RejectReason::Late => "late",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A record that could not be decoded, with a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub reason: RejectReason,
    pub detail: String,
    /// The event time, when it could be read before the record failed.
    pub event_ms: Option<i64>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
struct RawEvent<'a> {
    #[serde(rename = "viewId", borrow)]
    view_id: Option<Cow<'a, str>>,
    #[serde(rename = "startTimestamp", borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(rename = "endTimestamp", borrow)]
    end: Option<Cow<'a, str>>,
    #[serde(rename = "bannerId")]
    banner_id: Option<i64>,
    #[serde(rename = "campaignId")]
    campaign_id: Option<i64>,
}

/// The bounds a valid event must keep. They change what lands, so they are part of the
/// settings signature recorded with every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An event ending further than this after its Kafka record timestamp is invalid.
    pub max_future_skew_ms: i64,
    /// A view lasting longer than this is invalid: a start date left at a default such as
    /// `0001-01-01` would otherwise dwarf every real view in the window's sums.
    pub max_duration_ms: i64,
}

/// The first instant an event may have: 1970-01-01T00:00:00Z (Kafka's record timestamps start
/// there too).
pub const MIN_EVENT_MS: i64 = 0;
/// The last instant an event may have: 9999-12-31T23:59:59.999Z, the last four-digit year.
pub const MAX_EVENT_MS: i64 = 253_402_300_799_999;

fn fail(reason: RejectReason, detail: impl Into<String>, event_ms: Option<i64>) -> DecodeError {
    DecodeError {
        reason,
        detail: detail.into(),
        event_ms,
    }
}

/// Parses an ISO-8601 timestamp. No offset means UTC (what the original producer wrote); an
/// explicit `Z` or `+02:00` is honoured. Returns milliseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Some(ms) = parse_plain_timestamp(s.as_bytes()) {
        return Some(ms);
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The original producer's exact shape, `YYYY-MM-DDTHH:MM:SS[.fff]` with no zone, parsed
/// without chrono's format interpreter (it runs twice per event). Anything else returns None
/// and goes through chrono.
fn parse_plain_timestamp(b: &[u8]) -> Option<i64> {
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b[r].iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + (c - b'0') as i64)
        })
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut ms = 0;
    if b.len() > 19 {
        if b[19] != b'.' || b.len() == 20 || b.len() > 29 {
            return None;
        }
        let frac = &b[20..];
        if !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for (i, c) in frac.iter().take(3).enumerate() {
            ms += (c - b'0') as i64 * [100, 10, 1][i];
        }
    }
    // Reject impossible dates (Feb 30, Apr 31).
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if d > month_days[(mo - 1) as usize] {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's `days_from_civil`.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A timestamp outside [`MIN_EVENT_MS`, `MAX_EVENT_MS`]: far-off dates (year 1, year -200000)
/// are data errors, and window arithmetic and file names need a bounded range.
fn in_range(field: &str, text: &str, ms: i64, event_ms: Option<i64>) -> Result<(), DecodeError> {
    if (MIN_EVENT_MS..=MAX_EVENT_MS).contains(&ms) {
        return Ok(());
    }
    Err(fail(
        RejectReason::BadTimestamp,
        format!("{field} {text:?} is outside the supported range 1970-01-01 to 9999-12-31"),
        event_ms,
    ))
}

/// What windowing reads from a valid record: its times and its campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields {
    pub start_ms: i64,
    pub end_ms: i64,
    pub campaign_id: i64,
}

/// Decodes one record value. `record_ts_ms` is the Kafka record's timestamp; an event further
/// than `max_future_skew_ms` after it is invalid. The record timestamp is part of the log, so a
/// replay decides the same way, which a wall-clock check would not.
pub fn decode(
    value: Option<&[u8]>,
    record_ts_ms: Option<i64>,
    limits: &Limits,
) -> Result<ViewEvent, DecodeError> {
    decode_with(value, record_ts_ms, limits, |view_id, f, banner_id| {
        ViewEvent {
            view_id: view_id.into_owned(),
            start_ms: f.start_ms,
            end_ms: f.end_ms,
            banner_id,
            campaign_id: f.campaign_id,
        }
    })
}

/// [`decode`], keeping only what windowing reads: the same checks and the same rejects,
/// without copying the view id out of the record.
pub fn decode_fields(
    value: Option<&[u8]>,
    record_ts_ms: Option<i64>,
    limits: &Limits,
) -> Result<EventFields, DecodeError> {
    decode_with(value, record_ts_ms, limits, |_, f, _| f)
}

/// Whether the fast path reads `text` as serde_json does: true when it leaves the text to
/// serde_json, or reads the same fields from it. For the fuzz target and the tests.
#[doc(hidden)]
pub fn fast_path_agrees(text: &str) -> bool {
    match scan::scan(text) {
        None => true,
        Some(fast) => serde_json::from_str::<RawEvent<'_>>(text).is_ok_and(|slow| slow == fast),
    }
}

/// Decodes and checks a record value, then builds the caller's view of it from the view id,
/// the fields windowing reads and the banner id.
fn decode_with<T>(
    value: Option<&[u8]>,
    record_ts_ms: Option<i64>,
    limits: &Limits,
    make: impl FnOnce(Cow<'_, str>, EventFields, i64) -> T,
) -> Result<T, DecodeError> {
    let bytes = match value {
        Some(b) if !b.is_empty() => b,
        _ => return Err(fail(RejectReason::EmptyValue, "record has no value", None)),
    };
    let text = std::str::from_utf8(bytes)
        .map_err(|e| fail(RejectReason::NotUtf8, format!("not UTF-8: {e}"), None))?;
    let raw = match scan::scan(text) {
        Some(raw) => raw,
        None => serde_json::from_str(text).map_err(|e| {
            let reason = match e.classify() {
                serde_json::error::Category::Data => RejectReason::WrongType,
                _ => RejectReason::MalformedJson,
            };
            fail(reason, e.to_string(), None)
        })?,
    };
    let view_id = raw
        .view_id
        .ok_or_else(|| fail(RejectReason::MissingField, "missing field viewId", None))?;
    let (end_text, end_ms) = timestamp("endTimestamp", raw.end, None)?;
    let (start_text, start_ms) = timestamp("startTimestamp", raw.start, Some(end_ms))?;
    let missing = |field: &str| {
        fail(
            RejectReason::MissingField,
            format!("missing field {field}"),
            Some(end_ms),
        )
    };
    let banner_id = raw.banner_id.ok_or_else(|| missing("bannerId"))?;
    let campaign_id = raw.campaign_id.ok_or_else(|| missing("campaignId"))?;
    let fields = EventFields {
        start_ms,
        end_ms,
        campaign_id,
    };
    check_bounds(&fields, (&start_text, &end_text), record_ts_ms, limits)?;
    Ok(make(view_id, fields, banner_id))
}

/// A timestamp field: present, ISO-8601, and within the years Landfall accepts. Returns its
/// text and its milliseconds since the epoch. `event_ms` is the end time, once known.
fn timestamp<'a>(
    field: &str,
    text: Option<Cow<'a, str>>,
    event_ms: Option<i64>,
) -> Result<(Cow<'a, str>, i64), DecodeError> {
    let text = text.ok_or_else(|| {
        fail(
            RejectReason::MissingField,
            format!("missing field {field}"),
            event_ms,
        )
    })?;
    let ms = parse_timestamp(&text).ok_or_else(|| {
        fail(
            RejectReason::BadTimestamp,
            format!("{field} {text:?} is not an ISO-8601 date-time"),
            event_ms,
        )
    })?;
    in_range(field, &text, ms, event_ms)?;
    Ok((text, ms))
}

/// An event's times must be in order, its view no longer than the bound, and its end no
/// further than the skew after the record's timestamp.
fn check_bounds(
    ev: &EventFields,
    (start_text, end_text): (&str, &str),
    record_ts_ms: Option<i64>,
    limits: &Limits,
) -> Result<(), DecodeError> {
    let (start_ms, end_ms) = (ev.start_ms, ev.end_ms);
    let max_future_skew_ms = limits.max_future_skew_ms;
    if end_ms < start_ms {
        return Err(fail(
            RejectReason::EndBeforeStart,
            format!("endTimestamp {end_text} is before startTimestamp {start_text}"),
            Some(end_ms),
        ));
    }
    if end_ms - start_ms > limits.max_duration_ms {
        return Err(fail(
            RejectReason::DurationTooLong,
            format!(
                "the view lasts {} s (from {start_text} to {end_text}); at most {} s allowed \
                 (--max-duration-secs)",
                (end_ms - start_ms) / 1000,
                limits.max_duration_ms / 1000
            ),
            Some(end_ms),
        ));
    }
    if let Some(ts) = record_ts_ms {
        if end_ms > ts.saturating_add(max_future_skew_ms) {
            return Err(fail(
                RejectReason::TooFarInFuture,
                format!(
                    "endTimestamp {end_text} is {} s after the record timestamp; at most {} s allowed",
                    (end_ms as i128 - ts as i128) / 1000,
                    max_future_skew_ms / 1000
                ),
                Some(end_ms),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::generator::{Generator, GeneratorConfig, InvalidKind, RecordKind};

    fn limits(max_future_skew_ms: i64) -> Limits {
        Limits {
            max_future_skew_ms,
            max_duration_ms: 86_400_000,
        }
    }

    #[test]
    fn decodes_the_original_format_and_explicit_offsets() {
        let v = br#"{"viewId":"a","startTimestamp":"2024-09-13T06:49:12.123","endTimestamp":"2024-09-13T06:50:01.456","bannerId":517,"campaignId":40}"#;
        let e = decode(Some(v), None, &limits(0)).unwrap();
        assert_eq!(e.end_ms - e.start_ms, 49_333);
        assert_eq!(e.end_ms, 1_726_210_201_456);
        let v = br#"{"viewId":"a","startTimestamp":"2024-09-13T08:49:12.123+02:00","endTimestamp":"2024-09-13T06:50:01.456Z","bannerId":1,"campaignId":40}"#;
        let e = decode(Some(v), None, &limits(0)).unwrap();
        assert_eq!(e.end_ms - e.start_ms, 49_333);
    }

    #[test]
    fn every_generated_invalid_kind_gets_its_reason() {
        let mut g = Generator::new(GeneratorConfig {
            seed: 4,
            invalid_fraction: 1.0,
            ..Default::default()
        });
        let now = 1_726_210_201_456;
        for _ in 0..500 {
            let r = g.next_record(now);
            let RecordKind::Invalid(kind) = r.kind else {
                unreachable!()
            };
            let err = decode(Some(&r.value), Some(r.timestamp_ms), &limits(300_000)).unwrap_err();
            let want = match kind {
                InvalidKind::MalformedJson => RejectReason::MalformedJson,
                InvalidKind::MissingField => RejectReason::MissingField,
                InvalidKind::WrongType => RejectReason::WrongType,
                InvalidKind::EndBeforeStart => RejectReason::EndBeforeStart,
                InvalidKind::FarFuture => RejectReason::TooFarInFuture,
            };
            assert_eq!(
                err.reason,
                want,
                "{kind:?}: {}",
                String::from_utf8_lossy(&r.value)
            );
        }
    }

    #[test]
    fn the_fast_timestamp_path_agrees_with_chrono() {
        for s in [
            "2024-09-13T06:49:12.123",
            "2024-09-13T06:49:12",
            "2024-02-29T23:59:59.9",
            "2000-02-29T00:00:00",
            "2023-04-30T12:00:00",
            "1969-12-31T23:59:59.999999",
            "2000-01-01T00:00:00.000",
        ] {
            let want = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_millis();
            assert_eq!(parse_plain_timestamp(s.as_bytes()), Some(want), "{s}");
        }
        for s in [
            "2023-02-29T00:00:00",
            "1900-02-29T00:00:00",
            "2023-04-31T00:00:00",
            "2024-13-01T00:00:00",
            "2024-09-13T06:49:12.",
            "2024-09-13 06:49:12",
        ] {
            assert_eq!(parse_plain_timestamp(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn bytes_that_are_not_json_are_named() {
        assert_eq!(
            decode(Some(&[0xff, 0xfe]), None, &limits(0))
                .unwrap_err()
                .reason,
            RejectReason::NotUtf8
        );
        assert_eq!(
            decode(None, None, &limits(0)).unwrap_err().reason,
            RejectReason::EmptyValue
        );
        assert_eq!(
            decode(Some(b"hello"), None, &limits(0)).unwrap_err().reason,
            RejectReason::MalformedJson
        );
        assert_eq!(
            decode(Some(b"[1,2]"), None, &limits(0)).unwrap_err().reason,
            RejectReason::WrongType
        );
        let bad_ts = br#"{"viewId":"a","startTimestamp":"yesterday","endTimestamp":"2024-09-13T06:50:01.456","bannerId":1,"campaignId":40}"#;
        assert_eq!(
            decode(Some(bad_ts), None, &limits(0)).unwrap_err().reason,
            RejectReason::BadTimestamp
        );
    }

    #[test]
    fn hostile_dates_and_durations_are_rejected_by_name() {
        let ev = |start: &str, end: &str| {
            format!(
                r#"{{"viewId":"a","startTimestamp":"{start}","endTimestamp":"{end}","bannerId":1,"campaignId":40}}"#
            )
        };
        let reject = |start: &str, end: &str| {
            decode(Some(ev(start, end).as_bytes()), None, &limits(0)).unwrap_err()
        };
        let e = reject("0001-01-01T00:00:00", "2024-09-13T06:50:01.456");
        assert_eq!(e.reason, RejectReason::BadTimestamp, "{}", e.detail);
        assert!(e.detail.contains("startTimestamp") && e.detail.contains("1970-01-01"));
        assert_eq!(e.event_ms, Some(1_726_210_201_456));
        let e = reject("2024-09-13T06:49:00", "-200000-01-01T00:00:00");
        assert_eq!(e.reason, RejectReason::BadTimestamp, "{}", e.detail);
        let e = reject("2024-09-11T06:50:01.455", "2024-09-13T06:50:01.456");
        assert_eq!(e.reason, RejectReason::DurationTooLong, "{}", e.detail);
        assert!(e.detail.contains("--max-duration-secs"), "{}", e.detail);
        // Exactly the bound is still valid.
        let ok = ev("2024-09-12T06:50:01.456", "2024-09-13T06:50:01.456");
        assert!(decode(Some(ok.as_bytes()), None, &limits(0)).is_ok());
        // Extreme record timestamps do not overflow the future check.
        let v = ev("2024-09-13T06:49:00", "2024-09-13T06:50:00");
        assert!(decode(Some(v.as_bytes()), Some(i64::MAX), &limits(i64::MAX)).is_ok());
        assert_eq!(
            decode(Some(v.as_bytes()), Some(i64::MIN), &limits(0))
                .unwrap_err()
                .reason,
            RejectReason::TooFarInFuture
        );
    }
}
