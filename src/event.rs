//! The ad-view event and its JSON wire form, byte-compatible with the original Scala producer.
//!
//! Timestamps travel as ISO-8601 local date-times with millisecond precision and no zone
//! (`2024-09-13T06:49:12.123`), which the original producer wrote in UTC. Inside Landfall every
//! instant is an `i64` of milliseconds since the Unix epoch, UTC.

use std::io::Write;

/// One view of a banner, as the producer writes it and the consumer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewEvent {
    pub view_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub banner_id: i64,
    pub campaign_id: i64,
}

impl ViewEvent {
    /// Appends the event's JSON to `out`, with the original producer's field names and order.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"viewId\":\"");
        out.extend_from_slice(self.view_id.as_bytes());
        out.extend_from_slice(b"\",\"startTimestamp\":\"");
        write_timestamp(self.start_ms, out);
        out.extend_from_slice(b"\",\"endTimestamp\":\"");
        write_timestamp(self.end_ms, out);
        // Writing integers to a Vec cannot fail.
        let _ = write!(
            out,
            "\",\"bannerId\":{},\"campaignId\":{}}}",
            self.banner_id, self.campaign_id
        );
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        self.write_json(&mut out);
        out
    }
}

/// Appends `ms` (milliseconds since the epoch, UTC) as `YYYY-MM-DDTHH:MM:SS.mmm`, no zone.
///
/// Hand-rolled because it runs once per generated timestamp, twice per event; chrono's
/// formatter parses its format string on every call.
pub fn write_timestamp(ms: i64, out: &mut Vec<u8>) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        // Out of the four-digit range: fall back to chrono, which writes a sign and more digits.
        if let Some(dt) = chrono::DateTime::from_timestamp_millis(ms) {
            let _ = write!(out, "{}", dt.naive_utc().format("%Y-%m-%dT%H:%M:%S%.3f"));
        }
        return;
    }
    let y = y as u32;
    let digits = [
        y / 1000,
        y / 100 % 10,
        y / 10 % 10,
        y % 10,
        10, // '-'
        m / 10,
        m % 10,
        10,
        d / 10,
        d % 10,
        11, // 'T'
        sod / 36_000,
        sod / 3600 % 10,
        12, // ':'
        sod % 3600 / 600,
        sod % 3600 / 60 % 10,
        12,
        sod % 60 / 10,
        sod % 10,
        13, // '.'
        millis / 100,
        millis / 10 % 10,
        millis % 10,
    ];
    for v in digits {
        out.push(match v {
            10 => b'-',
            11 => b'T',
            12 => b':',
            13 => b'.',
            n => b'0' + n as u8,
        });
    }
}

/// Formats `ms` as an ISO-8601 timestamp string without zone (UTC).
pub fn format_timestamp(ms: i64) -> String {
    let mut out = Vec::with_capacity(23);
    write_timestamp(ms, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_original_producer() {
        let e = ViewEvent {
            view_id: "7c9e6679-7425-40de-944b-e07fc1f90ae7".into(),
            start_ms: 1_726_210_152_123,
            end_ms: 1_726_210_201_456,
            banner_id: 517,
            campaign_id: 40,
        };
        assert_eq!(
            String::from_utf8(e.to_json()).unwrap(),
            r#"{"viewId":"7c9e6679-7425-40de-944b-e07fc1f90ae7","startTimestamp":"2024-09-13T06:49:12.123","endTimestamp":"2024-09-13T06:50:01.456","bannerId":517,"campaignId":40}"#
        );
    }

    #[test]
    fn timestamps_agree_with_chrono() {
        for ms in [
            0i64,
            -1,
            951_782_400_000,
            1_726_210_152_123,
            4_102_444_799_999,
            -62_135_596_800_000,
        ] {
            let want = chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.3f")
                .to_string();
            assert_eq!(format_timestamp(ms), want, "ms={ms}");
        }
    }
}
