//! What decoding a record costs, without Kafka: `decode_fields` on the producer's records,
//! round after round, and the timestamp parser on their start times. Prints the fastest and
//! the median round in nanoseconds per record; compare builds by running them in turn.
//!
//!     cargo run --release --example decode_cost -- [RECORDS] [ROUNDS]
//!
//! 1,000 records (the default) stay in the CPU's caches, so this is the decoder's own cost;
//! 100,000 records add the memory traffic a drain has.
use std::time::Instant;

use landfall::consume::decode::{decode_fields, parse_timestamp, Limits};
use landfall::produce::generator::{Generator, GeneratorConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: usize| args.next().map_or(default, |s| s.parse().expect("a count"));
    let (n, rounds) = (arg(1_000), arg(3_000));
    let mut g = Generator::new(GeneratorConfig::default());
    let base = 1_726_210_201_456;
    // One record a simulated millisecond: the dense topic of `landfall bench consume`.
    let records: Vec<_> = (0..n as i64).map(|i| g.next_record(base + i)).collect();
    let limits = Limits {
        max_future_skew_ms: 3_600_000,
        max_duration_ms: 86_400_000,
    };
    let mut check = 0i64;
    let decode = time(n, rounds, || {
        for r in &records {
            let f = decode_fields(Some(&r.value), Some(r.timestamp_ms), &limits).expect("valid");
            check = check.wrapping_add(f.start_ms ^ f.end_ms ^ f.campaign_id);
        }
    });
    let starts: Vec<String> = records
        .iter()
        .map(|r| {
            let text = std::str::from_utf8(&r.value).expect("UTF-8");
            let at = text.find(r#""startTimestamp":""#).expect("a start") + 18;
            text[at..at + 23].to_string()
        })
        .collect();
    let timestamps = time(n, rounds, || {
        for s in &starts {
            check = check.wrapping_add(parse_timestamp(s).expect("a timestamp"));
        }
    });
    println!("decode_fields:   {decode}");
    println!("parse_timestamp: {timestamps}");
    println!("(checksum {check})");
}

/// Runs `f` `rounds` times over `n` records; the fastest and the median round, per record.
fn time(n: usize, rounds: usize, mut f: impl FnMut()) -> String {
    let mut per_record: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    per_record.sort_by(f64::total_cmp);
    format!(
        "fastest {:.1} ns, median {:.1} ns a record",
        per_record[0],
        per_record[rounds / 2]
    )
}
