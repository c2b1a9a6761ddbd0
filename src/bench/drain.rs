//! The drain benchmark: a pre-loaded topic drained by a bare consumer, by `landfall consume`,
//! and by `landfall consume` without durability.

use super::*;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConsumeReport {
    pub events: u64,
    pub partitions: i32,
    /// Records per simulated second: the window density (60 × this many records a window).
    pub sim_events_per_sec: f64,
    pub bare: Measurement,
    pub landfall: Measurement,
    pub landfall_no_durability: Measurement,
    /// landfall over bare, events/s.
    pub drain_ratio: f64,
    /// exactly-once over no-durability, events/s.
    pub eos_ratio: f64,
    /// The same, each drain's time counting the writeback it left behind (see
    /// [`RoundRatios::eos_with_writeback`]).
    pub eos_with_writeback_ratio: f64,
    /// `landfall consume` landing to the object store `--object-store` names, if given.
    pub landfall_object_store: Option<Measurement>,
    /// Landing to the object store over landing to local disk, events/s.
    pub object_store_ratio: Option<f64>,
    pub consume_events_per_sec: f64,
    /// Window and reject files the exactly-once drain landed.
    pub files_landed: u64,
    pub consumer_peak_rss_mb: f64,
    pub no_durability_peak_rss_mb: f64,
    /// Each round's ratios, in the order run (`--rounds`); the ratios above are their medians.
    pub rounds: Vec<RoundRatios>,
    /// The drains' output, left in place until every measurement is done: see
    /// [`remove_outputs`].
    #[serde(skip)]
    pub output: std::path::PathBuf,
}

/// The middle value (the upper one of an even count); None for none.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One round's ratios: its drains against each other.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct RoundRatios {
    pub drain: f64,
    pub eos: f64,
    /// `eos` with each local drain's writeback added to its time: what the no-durability
    /// drain leaves the kernel to write after it ends, counted against it.
    pub eos_with_writeback: f64,
    /// Seconds of writeback each drain left behind: (exactly-once, no durability).
    pub writeback: (f64, f64),
    pub object_store: Option<f64>,
}

/// One round of drains of the pre-loaded topic: bare, exactly-once, without durability, to
/// the object store, and bare again.
struct Round {
    bare: Measurement,
    landfall: Measurement,
    fast: Measurement,
    remote: Option<Measurement>,
    rss: f64,
    fast_rss: f64,
    files_landed: u64,
    /// The writeback each local drain left behind: (exactly-once, no durability).
    writeback: (f64, f64),
}

impl Round {
    fn ratios(&self) -> RoundRatios {
        RoundRatios {
            drain: self.landfall.events_per_sec() / self.bare.events_per_sec(),
            eos: self.landfall.events_per_sec() / self.fast.events_per_sec(),
            eos_with_writeback: (self.fast.wall_secs + self.writeback.1)
                / (self.landfall.wall_secs + self.writeback.0),
            writeback: self.writeback,
            object_store: self
                .remote
                .as_ref()
                .map(|r| r.events_per_sec() / self.landfall.events_per_sec()),
        }
    }
}

/// Removes the drains' output. Only after the last measurement: ext4 allocates inodes slowly
/// for minutes after a mass delete (it skips recently freed ones), so a drain that ran right
/// after another's output was removed would pay for that removal.
pub fn remove_outputs(reports: &[&ConsumeReport]) {
    for r in reports {
        let _ = std::fs::remove_dir_all(&r.output);
    }
}

/// Drain benchmark: pre-loads a topic, then drains it with a bare read_committed consumer that
/// only counts bytes, with `landfall consume --exit-on-idle`, and with the same minus fsync,
/// state flushes and commits; and, when `object_store` names a prefix (`s3://bucket/bench`),
/// with `landfall consume` landing there (under `<prefix>/<run id>`, which is left in place).
pub async fn consume(
    kafka: &KafkaSettings,
    events: u64,
    partitions: i32,
    work_dir: &std::path::Path,
    sim_events_per_sec: f64,
    object_store: Option<&str>,
    rounds: u32,
) -> Result<ConsumeReport, BenchError> {
    let run_id = run_id();
    let object_store = object_store.map(|url| format!("{}/{run_id}", url.trim_end_matches('/')));
    let topic = bench_topic(kafka, "drain", &run_id);
    create_topic(&topic, partitions, 1).await?;
    let mut cfg = load_config(&topic, events, 10_000, 10, &run_id);
    if let Clock::Simulated { events_per_sec, .. } = &mut cfg.clock {
        *events_per_sec = sim_events_per_sec;
    }
    let work = work_dir.join(format!("bench-{run_id}"));
    tokio::task::spawn_blocking(move || {
        let loaded = producer::run(&cfg, &CancellationToken::new())?;
        let drain = LandfallDrain {
            topic: &topic,
            run_id: &run_id,
            work: &work,
            events,
            bytes: loaded.bytes_committed,
        };
        let mut all = Vec::new();
        for round in 0..rounds.max(1) {
            all.push(drain.round(round, rounds, object_store.as_deref())?);
        }
        // The round whose drain ratio is the median stands for the run; every round's ratios
        // are kept beside it.
        let ratios: Vec<RoundRatios> = all.iter().map(Round::ratios).collect();
        all.sort_by(|a, b| a.ratios().drain.total_cmp(&b.ratios().drain));
        let r = all.swap_remove(all.len() / 2);
        let median = |f: fn(&RoundRatios) -> Option<f64>| median(ratios.iter().filter_map(f));
        Ok(ConsumeReport {
            output: work,
            events,
            partitions,
            sim_events_per_sec,
            drain_ratio: median(|r| Some(r.drain)).unwrap_or(f64::NAN),
            eos_ratio: median(|r| Some(r.eos)).unwrap_or(f64::NAN),
            eos_with_writeback_ratio: median(|r| Some(r.eos_with_writeback)).unwrap_or(f64::NAN),
            object_store_ratio: median(|r| r.object_store),
            consume_events_per_sec: r.landfall.events_per_sec(),
            files_landed: r.files_landed,
            consumer_peak_rss_mb: r.rss,
            no_durability_peak_rss_mb: r.fast_rss,
            rounds: ratios,
            bare: r.bare,
            landfall: r.landfall,
            landfall_no_durability: r.fast,
            landfall_object_store: r.remote,
        })
    })
    .await
    .map_err(|e| BenchError::Thread(e.to_string()))?
}

/// One density's table and ratios.
pub fn consume_summary(r: &ConsumeReport) -> String {
    let mut rows = vec![
        r.bare.clone(),
        r.landfall.clone(),
        r.landfall_no_durability.clone(),
    ];
    rows.extend(r.landfall_object_store.clone());
    let mut out = table(&rows);
    out += &format!(
        "files landed (exactly-once)              = {}\n",
        r.files_landed
    );
    out += &format!(
        "drain_ratio (landfall / bare)            = {:.3}\n",
        r.drain_ratio
    );
    out += &format!(
        "eos_ratio (landfall / no fsync, commits) = {:.3}\n",
        r.eos_ratio
    );
    let wb = |f: fn(&RoundRatios) -> f64| median(r.rounds.iter().map(f)).unwrap_or(f64::NAN);
    out += &format!(
        "eos_ratio counting the writeback each drain left behind ({:.2} s exactly-once, {:.2} s \
         no durability) = {:.3}\n",
        wb(|x| x.writeback.0),
        wb(|x| x.writeback.1),
        r.eos_with_writeback_ratio
    );
    if let Some(ratio) = r.object_store_ratio {
        out += &format!("object_store_ratio (object store / local disk) = {ratio:.3}\n");
    }
    if r.rounds.len() > 1 {
        let list = |f: fn(&RoundRatios) -> Option<f64>| {
            r.rounds
                .iter()
                .filter_map(f)
                .map(|x| format!("{x:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        out += &format!(
            "rounds ({}; the table is the median drain round's, the ratios above the medians): \
             drain {}; eos {}; eos counting the writeback {}",
            r.rounds.len(),
            list(|x| Some(x.drain)),
            list(|x| Some(x.eos)),
            list(|x| Some(x.eos_with_writeback)),
        );
        if r.object_store_ratio.is_some() {
            out += &format!("; object store {}", list(|x| x.object_store));
        }
        out += "\n";
    }
    out += &format!(
        "consumer peak RSS = {:.1} MB (no durability: {:.1} MB)\n",
        r.consumer_peak_rss_mb, r.no_durability_peak_rss_mb
    );
    out
}

/// What a landed file costs: the same events drained at two densities differ only in how
/// many files they land, so the exactly-once drains' CPU difference over their files'
/// difference is the CPU one more file costs (between the densest and each sparser one).
pub fn per_file_cost(reports: &[ConsumeReport]) -> String {
    let Some(dense) = reports.iter().min_by_key(|r| r.files_landed) else {
        return String::new();
    };
    let mut out = String::new();
    for r in reports {
        let files = r.files_landed.saturating_sub(dense.files_landed);
        if files == 0 || r.events != dense.events {
            continue;
        }
        let cpu = r.landfall.cpu_secs - dense.landfall.cpu_secs;
        let wall = r.landfall.wall_secs - dense.landfall.wall_secs;
        out += &format!(
            "per landed file ({} vs {} records per simulated second, {files} more files): \
             {:.3} ms CPU, {:.3} ms wall\n",
            r.sim_events_per_sec,
            dense.sim_events_per_sec,
            cpu * 1000.0 / files as f64,
            wall * 1000.0 / files as f64,
        );
    }
    out
}

/// What one `landfall consume` drain measured.
struct Drained {
    m: Measurement,
    /// The child's peak RSS, MB.
    rss: f64,
    /// Parquet files it landed on local disk.
    files: u64,
    /// Seconds a `sync` right after it took: the writing back it left to the kernel (none
    /// for an exactly-once drain, which fsyncs what it lands; all of it for a drain without
    /// durability).
    writeback: f64,
}

/// One `landfall consume` drain of the pre-loaded topic, as a child process.
struct LandfallDrain<'a> {
    topic: &'a KafkaSettings,
    run_id: &'a str,
    work: &'a std::path::Path,
    events: u64,
    bytes: u64,
}

impl LandfallDrain<'_> {
    /// Round `round` of `rounds`: each drain into directories (and an object-store prefix) of
    /// its own, so no drain meets another's files.
    fn round(
        &self,
        round: u32,
        rounds: u32,
        object_store: Option<&str>,
    ) -> Result<Round, BenchError> {
        let tag = if rounds > 1 {
            format!("-{round}")
        } else {
            String::new()
        };
        let bare_drain = || {
            measure("bare rdkafka consumer (count bytes)", || {
                bare_drain(self.topic)
            })
        };
        let bare = bare_drain()?;
        let eos = self.run(&format!("eos{tag}"), &[], None)?;
        let fast = self.run(&format!("nodur{tag}"), &["--unsafe-no-durability"], None)?;
        let remote = match object_store {
            Some(url) => Some(
                self.run(&format!("store{tag}"), &[], Some(&format!("{url}{tag}")))?
                    .m,
            ),
            None => None,
        };
        // The first drain after loading runs against a cold broker; drain bare again and keep
        // the faster of the two, so the ratio is not flattered by a slow baseline.
        let again = bare_drain()?;
        let bare = if again.events_per_sec() > bare.events_per_sec() {
            again
        } else {
            bare
        };
        Ok(Round {
            bare,
            landfall: eos.m,
            fast: fast.m,
            remote,
            rss: eos.rss,
            fast_rss: fast.rss,
            files_landed: eos.files,
            writeback: (eos.writeback, fast.writeback),
        })
    }

    /// Drains with `extra` flags into `out` (an object-store URL) or the local work directory;
    /// the measurement, the child's peak RSS and the Parquet files it landed on local disk.
    fn run(&self, name: &str, extra: &[&str], out: Option<&str>) -> Result<Drained, BenchError> {
        let dir = self.work.join(name);
        let out = out.map_or_else(|| dir.clone(), std::path::PathBuf::from);
        let group = format!("bench-{name}-{}", self.run_id);
        let mut args = consume_args(self.topic, &group, &out, &dir, "state");
        args.extend(extra.iter().map(|s| s.to_string()));
        let broker0 = broker_cpu_secs();
        let (wall, cpu, rss) = run_child(&args)?;
        let broker = broker0.zip(broker_cpu_secs()).map(|(a, b)| b - a);
        let writeback = writeback_secs();
        let files = walkdir::WalkDir::new(&dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
            .count() as u64;
        let name = match (extra.is_empty(), out.starts_with(&dir)) {
            (false, _) => "landfall consume (no fsync/commit)",
            (true, true) => "landfall consume",
            (true, false) => "landfall consume to the object store",
        };
        let m = Measurement {
            name: name.into(),
            events: self.events,
            bytes: self.bytes,
            wall_secs: wall,
            cpu_secs: cpu,
            broker_cpu_secs: broker,
        };
        Ok(Drained {
            m,
            rss,
            files,
            writeback,
        })
    }
}

/// `landfall consume --exit-on-idle` over `topic` for `group`, landing into `out/report` and
/// `out/rejects` (`out` a directory or an object-store URL), its state in `dir/<state>`.
pub(super) fn consume_args(
    topic: &KafkaSettings,
    group: &str,
    out: &std::path::Path,
    dir: &std::path::Path,
    state: &str,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "consume",
        "--brokers",
        &topic.brokers,
        "--topic",
        &topic.topic,
        "--group",
        group,
        "--exit-on-idle",
        "--idle-timeout-secs",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, root, sub) in [
        ("--output-dir", out, "report"),
        ("--rejects-dir", out, "rejects"),
        ("--state-dir", dir, state),
    ] {
        args.push(flag.into());
        args.push(root.join(sub).to_string_lossy().into_owned());
    }
    // The child gets the raw Kafka properties through a file only it can read, not on its
    // command line, where a secret would show in the process list.
    if topic.properties.iter().next().is_some() {
        let file = dir.join("kafka.properties");
        let text: String = topic
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        match private_file(&file, &text) {
            Ok(()) => {
                args.push("--kafka-config-file".into());
                args.push(file.to_string_lossy().into_owned());
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "could not write the Kafka properties for the consumers; they run without them")
            }
        }
    }
    args
}

/// Writes `text` to a new file that only this user can read.
fn private_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(path.parent().unwrap_or(path))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Reads every partition from the beginning to its end with read_committed, counting records
/// and bytes and nothing else.
fn bare_drain(topic: &KafkaSettings) -> Result<(u64, u64), BenchError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let mut config = topic.client_config();
    config
        .set("group.id", format!("bench-bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    // The same fetch settings as `landfall consume`, so only the work differs.
    let consumer: BaseConsumer<crate::ops::kafka::QuietEof> =
        crate::ops::kafka::fetch_settings(&mut config)
            .create_with_context(crate::ops::kafka::QuietEof)?;
    let n = crate::ops::kafka::wait_for_topic_polled(&consumer, topic)?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..n as i32 {
        tpl.add_partition_offset(&topic.topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut done = vec![false; n];
    let mut eof = vec![false; n];
    let topic_name = topic.topic.clone();
    let (mut records, mut bytes) = (0u64, 0u64);
    while done.iter().any(|d| !d) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                for (p, d) in done.iter_mut().enumerate() {
                    if eof[p] && !*d {
                        let ends = crate::ops::kafka::PartitionEnds::default();
                        *d = crate::ops::kafka::stable_end(
                            &consumer,
                            &topic_name,
                            p as i32,
                            &ends,
                            0,
                        )
                        .is_some();
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => eof[p as usize] = true,
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                eof[m.partition() as usize] = false;
                records += 1;
                bytes += (m.payload_len() + m.key().map_or(0, |k| k.len())) as u64;
            }
        }
    }
    Ok((records, bytes))
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_takes_the_middle_round_and_the_upper_of_two() {
        assert_eq!(median([0.9, 0.7, 0.8].into_iter()), Some(0.8));
        assert_eq!(median([0.9, 0.7].into_iter()), Some(0.9));
        assert_eq!(median(std::iter::empty()), None);
    }
}
