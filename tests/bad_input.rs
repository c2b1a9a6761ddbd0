//! The bad-input catalogue: one record of each awkward kind, written raw to a topic. Each
//! lands exactly once, in the rejects or in a window (duplicate viewIds and unknown campaigns
//! are counted, as the original's left join counted them), and the consumer neither crashes
//! nor stalls.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use support::harness::*;
use support::output::*;
use support::*;

fn event(view: &str, start: &str, end: &str, campaign: i64) -> String {
    format!(
        r#"{{"viewId":"{view}","startTimestamp":"{start}","endTimestamp":"{end}","bannerId":517,"campaignId":{campaign}}}"#
    )
}

/// Key, value, and what must become of it: a reject reason, or "window".
type Case = (Option<Vec<u8>>, Option<Vec<u8>>, &'static str);

fn catalogue() -> Vec<Case> {
    let k = |s: &str| Some(s.as_bytes().to_vec());
    let v = |s: String| Some(s.into_bytes());
    let padded = {
        // A valid event padded with an extra field to 1 MiB.
        let e = event(
            "big",
            "2024-09-13T06:50:00.000",
            "2024-09-13T06:50:30.000",
            30,
        );
        let pad = 1024 * 1024 - e.len() - 10;
        format!(r#"{},"pad":"{}"}}"#, &e[..e.len() - 1], "x".repeat(pad))
    };
    let dup = event(
        "dup",
        "2024-09-13T06:53:00.000",
        "2024-09-13T06:53:31.000",
        999,
    );
    vec![
        (k("a"), v(event("a", "2024-09-13T06:50:00.000", "2024-09-13T06:50:10.000", 10)), "window"),
        (k("b"), v(event("b", "2024-09-13T06:50:01.000", "2024-09-13T06:50:20.500", 20)), "window"),
        (k("c"), Some(vec![0xff, 0xfe, 0x00, 0x80, b'{']), "not_utf8"),
        (k("d"), v("hello, not json".into()), "malformed_json"),
        (k("e"), v(r#"{"viewId":"e","startTimestamp":"2024-09-13T06:50:00"}"#.into()), "missing_field"),
        (k("f"), v(r#"{"viewId":"f","startTimestamp":"2024-09-13T06:50:00","endTimestamp":"2024-09-13T06:50:05","bannerId":"five","campaignId":10}"#.into()), "wrong_type"),
        (k("big"), v(padded), "window"),
        (None, v(event("nokey", "2024-09-13T06:50:00.000", "2024-09-13T06:50:40.000", 40)), "window"),
        (k("null-value"), None, "empty_value"),
        (k("g"), v(event("g", "2024-09-13T06:50:30.000", "2024-09-13T06:50:10.000", 10)), "end_before_start"),
        (k("h"), v(event("h", "2100-01-01T00:00:00.000", "2100-01-01T00:01:00.000", 10)), "too_far_in_future"),
        // Moves the watermark to 06:52:30, closing the 06:50 window.
        (k("i"), v(event("i", "2024-09-13T06:53:00.000", "2024-09-13T06:53:30.000", 50)), "window"),
        (k("j"), v(event("j", "2000-01-01T00:00:00.000", "2000-01-01T00:00:10.000", 10)), "late"),
        (k("dup"), v(dup.clone()), "window"),
        (k("dup"), v(dup), "window"),
        (k("a"), v(event("a", "2024-09-13T06:53:00.000", "2024-09-13T06:53:40.000", 10)), "window"),
        (k("l"), v(event("l", "yesterday", "2024-09-13T06:53:40.000", 10)), "bad_timestamp"),
        // Hostile values that parse: a start left at year 1 (a view of two thousand years,
        // which once landed in the 06:53 window with that duration), a zero-length view in
        // the year -200000, and a view one second longer than --max-duration-secs' default
        // 86,400 s.
        (k("m"), v(event("m", "0001-01-01T00:00:00", "2024-09-13T06:53:50.000", 10)), "bad_timestamp"),
        (k("n"), v(event("n", "-200000-01-01T00:00:00", "-200000-01-01T00:00:00", 10)), "bad_timestamp"),
        (k("o"), v(event("o", "2024-09-12T06:53:44.000", "2024-09-13T06:53:45.000", 10)), "duration_too_long"),
    ]
}

/// A one-partition topic that takes the 1 MiB record.
fn create_big_message_topic(topic: &str) {
    let t = NewTopic::new(topic, 1, TopicReplication::Fixed(1)).set("max.message.bytes", "4194304");
    let r = block_on(admin().create_topics([&t], &AdminOptions::new())).unwrap();
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
}

#[test]
fn every_bad_input_lands_exactly_once_and_nothing_stalls() {
    let mut ledger = Ledger::new("bad_input");
    let topic = unique_topic("catalogue");
    create_big_message_topic(&topic);
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("message.max.bytes", "4194304")
        .create()
        .unwrap();
    let items = catalogue();
    for (key, value, _) in &items {
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic).partition(0);
        if let Some(k) = key {
            r = r.key(&k[..]);
        }
        if let Some(v) = value {
            r = r.payload(&v[..]);
        }
        producer.send(r).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    ledger.faults = items.len() as u64;

    let d = dirs();
    let group = format!("{topic}-g");
    let t0 = Instant::now();
    let mut cmd = consume_cmd(&topic, &group, &d, true);
    let log = log_stderr(&mut cmd, d.tmp.path(), "consumer");
    let mut child = ChildGuard::spawn(cmd);
    let status = wait_exit(child.child(), Duration::from_secs(60), "consumer");
    child.0 = None;
    assert!(
        status.success(),
        "consumer exit {status}:\n{}",
        read_log(&log)
    );
    eprintln!("catalogue consumed in {:?}", t0.elapsed());

    let want_rejects: BTreeMap<(i32, i64), String> = items
        .iter()
        .enumerate()
        .filter(|(_, (_, _, fate))| *fate != "window")
        .map(|(o, (_, _, fate))| ((0, o as i64), fate.to_string()))
        .collect();
    assert_eq!(read_rejects(&d.rejects), want_rejects);

    let minute = |m: i64| (1_726_210_140_000 + (m - 49) * 60_000) * 1000;
    let windows = read_windows(&d.report);
    let counts: BTreeMap<(i64, i64), i64> =
        windows[&0].iter().map(|(k, cell)| (*k, cell.0)).collect();
    let want: BTreeMap<(i64, i64), i64> = [
        ((minute(50), 10), 1),
        ((minute(50), 20), 1),
        ((minute(50), 30), 1),
        ((minute(50), 40), 1),
        ((minute(53), 10), 1),
        ((minute(53), 50), 1),
        // The duplicate viewId is counted twice; the unknown campaign is kept.
        ((minute(53), 999), 2),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts, want);
    // The 1 MiB event's duration, exactly.
    assert_eq!(windows[&0][&(minute(50), 30)].1, 30_000);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    ledger.book();
}
