//! A read_committed look at a topic from the beginning to its current end: counts per partition
//! and the first few records. For demos and for checking what readers will see.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::ops::kafka::{scan, KafkaSettings, ScanError};

/// What a read_committed reader sees.
#[derive(Debug, Default)]
pub struct Peek {
    pub per_partition: BTreeMap<i32, u64>,
    pub first: Vec<(i32, i64, String)>,
}

pub fn peek(kafka: &KafkaSettings, limit: usize) -> Result<Peek, ScanError> {
    let mut out = Peek::default();
    scan(
        kafka,
        true,
        &BTreeMap::new(),
        Duration::from_secs(300),
        |r| {
            *out.per_partition.entry(r.partition).or_default() += 1;
            if out.first.len() < limit {
                let text = String::from_utf8_lossy(r.value.unwrap_or_default()).into_owned();
                out.first.push((r.partition, r.offset, text));
            }
        },
    )?;
    Ok(out)
}
