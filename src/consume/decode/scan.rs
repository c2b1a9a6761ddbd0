//! The fast path of decoding: the plain JSON object nearly every record is, read without serde.
//!
//! serde_json stays the reference and the fallback. [`scan`] reads only the plainest form of a
//! record: one object whose members are among the five known fields, each at most once, with
//! strings that hold no escape and no control character, and integers of at most 18 digits
//! with no fraction, exponent, leading zero or negative zero. For such a text it returns what
//! serde_json reads; for anything else (`null`, an escape, an unknown or repeated field, a
//! value of the wrong type, malformed JSON) it returns `None`, and serde_json reads the text,
//! so every reject and its message are serde_json's as before. The fuzz target and the tests
//! compare the two on every text the fast path takes.
//!
//! The producer's own layout (its five fields in its order, no whitespace) is read first by
//! comparing the text with the layout's fixed parts, without reading and matching each key;
//! any other plain text is read member by member.
//!
//! Why: in a profile of a 5M-record dense drain, serde_json was 1.35 s of the pipeline worker's
//! 2.6 s. On the producer's records this reads one in 258 ns on average where serde_json takes
//! 376 ns on the same machine (docs/performance.md, seventh round).

use std::borrow::Cow;

use super::RawEvent;

/// The fields of `text`, or `None` when it is not in the plain form (see the module).
pub(super) fn scan(text: &str) -> Option<RawEvent<'_>> {
    producers_layout(text).or_else(|| any_order(text))
}

/// The producer's own layout, byte for byte: the five fields in its order, no whitespace. It
/// compares the text with the layout's fixed parts instead of reading and matching each key,
/// and returns what [`any_order`] returns for the same text; any other text is left to it.
fn producers_layout(text: &str) -> Option<RawEvent<'_>> {
    let mut s = Scanner { text, i: 0 };
    s.literal(br#"{"viewId":"#)?;
    let view_id = s.string()?;
    s.literal(br#","startTimestamp":"#)?;
    let start = s.string()?;
    s.literal(br#","endTimestamp":"#)?;
    let end = s.string()?;
    s.literal(br#","bannerId":"#)?;
    let banner_id = s.integer()?;
    s.literal(br#","campaignId":"#)?;
    let campaign_id = s.integer()?;
    s.literal(b"}")?;
    (s.i == text.len()).then_some(RawEvent {
        view_id: Some(Cow::Borrowed(view_id)),
        start: Some(Cow::Borrowed(start)),
        end: Some(Cow::Borrowed(end)),
        banner_id: Some(banner_id),
        campaign_id: Some(campaign_id),
    })
}

/// The plain form with its members in any order and JSON's whitespace around its tokens.
fn any_order(text: &str) -> Option<RawEvent<'_>> {
    let mut s = Scanner { text, i: 0 };
    let mut raw = RawEvent::default();
    s.skip_ws();
    s.eat(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            let key = s.string()?;
            s.skip_ws();
            s.eat(b':')?;
            s.skip_ws();
            match key {
                "viewId" => fill(&mut raw.view_id, Cow::Borrowed(s.string()?))?,
                "startTimestamp" => fill(&mut raw.start, Cow::Borrowed(s.string()?))?,
                "endTimestamp" => fill(&mut raw.end, Cow::Borrowed(s.string()?))?,
                "bannerId" => fill(&mut raw.banner_id, s.integer()?)?,
                "campaignId" => fill(&mut raw.campaign_id, s.integer()?)?,
                _ => return None,
            }
            s.skip_ws();
            match s.peek()? {
                b',' => s.i += 1,
                b'}' => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
            s.skip_ws();
        }
    }
    s.skip_ws();
    (s.i == text.len()).then_some(raw)
}

/// Fills a field seen for the first time; a repeated field is serde_json's to reject.
fn fill<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// Where a plain string's body ends in `b`: the offset of its first quote, backslash or control
/// character, eight bytes at a time (each test is the "has a zero byte" trick: the lowest byte
/// it flags is the first that matches; bytes above it may be flagged falsely, and are never
/// looked at).
fn string_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |x: u64, c: u8| x.wrapping_sub(ONES * u64::from(c)) & !x;
    let mut chunks = b.chunks_exact(8);
    for (n, chunk) in chunks.by_ref().enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().expect("a chunk of 8"));
        let flagged = (below(x ^ (ONES * u64::from(b'"')), 1)
            | below(x ^ (ONES * u64::from(b'\\')), 1)
            | below(x, 0x20))
            & HIGH;
        if flagged != 0 {
            return Some(n * 8 + (flagged.trailing_zeros() / 8) as usize);
        }
    }
    let rest = chunks.remainder();
    let done = b.len() - rest.len();
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| done + p)
}

struct Scanner<'a> {
    text: &'a str,
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// The bytes `l`, exactly.
    fn literal(&mut self, l: &[u8]) -> Option<()> {
        let next = self.text.as_bytes().get(self.i..self.i + l.len())?;
        (next == l).then(|| self.i += l.len())
    }

    /// JSON's whitespace: space, tab, line feed, carriage return.
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A string with no escape and no control character, without its quotes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let end = start + string_end(&self.text.as_bytes()[start..])?;
        self.i = end;
        self.eat(b'"')?;
        // Both ends are ASCII quotes, so both are character boundaries.
        Some(&self.text[start..end])
    }

    /// An integer of 1 to 18 digits, optionally negative. `0` alone is one; `-0` and `01` are
    /// left to serde_json, and so are `1.5` and `1e3`, whose `.` or `e` no object may hold
    /// after a value.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.i += 1;
        }
        let start = self.i;
        let mut value: i64 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            if self.i - start == 18 {
                return None;
            }
            value = value * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        let digits = self.i - start;
        if digits == 0 {
            return None;
        }
        let leading_zero = self.text.as_bytes()[start] == b'0';
        if leading_zero && (digits > 1 || negative) {
            return None;
        }
        Some(if negative { -value } else { value })
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::ChaCha8Rng;
    use rand::{RngExt, SeedableRng};

    use super::{any_order, producers_layout, scan, string_end};
    use crate::consume::decode::fast_path_agrees;
    use crate::produce::generator::{Generator, GeneratorConfig, RecordKind};

    fn generated(invalid_fraction: f64, n: usize) -> Vec<(bool, String)> {
        let mut g = Generator::new(GeneratorConfig {
            seed: 11,
            invalid_fraction,
            ..Default::default()
        });
        (0..n)
            .map(|_| {
                let r = g.next_record(1_726_210_201_456);
                let valid = matches!(r.kind, RecordKind::Valid);
                (valid, String::from_utf8(r.value).unwrap())
            })
            .collect()
    }

    #[test]
    fn every_generated_record_is_read_as_serde_json_reads_it() {
        for (valid, text) in generated(0.3, 3000) {
            assert!(fast_path_agrees(&text), "{text}");
            // The producer's own records take the fast path through its layout, or it saves
            // nothing.
            assert!(!valid || producers_layout(&text).is_some(), "{text}");
        }
    }

    #[test]
    fn plain_forms_are_read_and_every_other_form_is_left_to_serde_json() {
        let taken = [
            r#"{"viewId":"a","startTimestamp":"s","endTimestamp":"e","bannerId":1,"campaignId":40}"#,
            " {\t\"campaignId\" : -7 ,\r\n\"viewId\":\"\u{e9}\u{1F600}\"} \n",
            "{}",
            r#"{"bannerId":0,"campaignId":999999999999999999}"#,
            r#"{"bannerId":-999999999999999999}"#,
            r#"{"viewId":""}"#,
        ];
        for text in taken {
            assert!(scan(text).is_some(), "{text}");
            assert!(fast_path_agrees(text), "{text}");
        }
        let left = [
            r#"{"viewId":"a\"b"}"#,
            r#"{"viewId":"a\u0041"}"#,
            "{\"viewId\":\"a\tb\"}",
            r#"{"viewId":null}"#,
            r#"{"bannerId":-0}"#,
            r#"{"bannerId":01}"#,
            r#"{"bannerId":1.0}"#,
            r#"{"bannerId":1e3}"#,
            r#"{"bannerId":1000000000000000000}"#,
            r#"{"bannerId":"1"}"#,
            r#"{"viewId":1}"#,
            r#"{"bannerId":-}"#,
            r#"{"bannerId":}"#,
            r#"{"bannerId":1,"bannerId":2}"#,
            r#"{"other":1}"#,
            r#"{"view\u0049d":"a"}"#,
            r#"{"bannerId":1,}"#,
            r#"{"bannerId":1}x"#,
            r#"{"bannerId":1"#,
            r#"{"bannerId" 1}"#,
            r#"{,}"#,
            r#"["a","s","e",1,2]"#,
            "",
            "{\"viewId\":\"a\"}\u{a0}",
        ];
        for text in left {
            assert!(scan(text).is_none(), "{text}");
        }
    }

    /// The eight-bytes-at-a-time search finds what a byte-by-byte one finds, on every length
    /// and with the bytes around each boundary it tests (below and above a control character,
    /// a quote, a backslash, and the bytes of multi-byte characters).
    #[test]
    fn a_string_ends_where_a_byte_by_byte_search_says() {
        const EDGES: &[u8] = &[
            0x00, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7f, 0x80, 0x9f, 0xa0,
            0xdc, 0xe2, 0xff, b'a',
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200_000 {
            let len = rng.random_range(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => EDGES[rng.random_range(0..EDGES.len())],
                    _ => rng.random_range(0x23..0x7f),
                })
                .collect();
            let want = bytes
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            assert_eq!(string_end(&bytes), want, "{bytes:02x?}");
        }
    }

    /// Random edits of real records, with the characters JSON's grammar turns on: wherever
    /// the fast path takes the result, serde_json reads the same fields.
    #[test]
    fn edited_records_are_read_as_serde_json_reads_them() {
        const ALPHABET: &[u8] = b"{}[]\":,\\ \t\n-0123456789.eEnulxI";
        let records = generated(0.0, 50);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut taken, mut tried, mut in_layout) = (0, 0, 0);
        for _ in 0..200_000 {
            let mut bytes = records[rng.random_range(0..records.len())]
                .1
                .clone()
                .into_bytes();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                let c = ALPHABET[rng.random_range(0..ALPHABET.len())];
                match rng.random_range(0..3) {
                    0 => bytes[at] = c,
                    1 => bytes.insert(at, c),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            tried += 1;
            taken += usize::from(scan(&text).is_some());
            assert!(fast_path_agrees(&text), "{text}");
            if let Some(fields) = producers_layout(&text) {
                in_layout += 1;
                assert_eq!(Some(fields), any_order(&text), "{text}");
            }
        }
        // Both paths are exercised: many edits keep a plain record, many do not.
        assert!(
            taken > tried / 10 && taken < tried * 9 / 10,
            "{taken} of {tried}"
        );
        assert!(in_layout > tried / 10, "{in_layout} of {tried}");
    }
}
