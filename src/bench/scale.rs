//! Scale-out: the same pre-loaded topic drained by 1, 2, … `landfall consume` instances in one
//! group, each with its own state directory, side by side in one run.

use tokio_util::sync::CancellationToken;

use super::{bench_topic, consume_args, load_config, run_id, BenchError, Child, Measurement};
use crate::ops::kafka::{create_topic, KafkaSettings};
use crate::produce::producer;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleRun {
    pub instances: usize,
    /// Wall time until the last instance exited; CPU summed over the instances.
    pub measurement: Measurement,
    pub peak_rss_mb: Vec<f64>,
    /// events/s over the single instance's.
    pub speedup: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleReport {
    pub events: u64,
    pub partitions: i32,
    pub runs: Vec<ScaleRun>,
}

/// Pre-loads a topic, then drains it with each instance count in turn (new group and output
/// each time); every instance runs `--exit-on-idle`.
pub async fn scale(
    kafka: &KafkaSettings,
    events: u64,
    partitions: i32,
    instances: &[usize],
    work_dir: &std::path::Path,
) -> Result<ScaleReport, BenchError> {
    let run_id = run_id();
    let topic = bench_topic(kafka, "scale", &run_id);
    create_topic(&topic, partitions, 1).await?;
    let cfg = load_config(&topic, events, 10_000, 10, &run_id);
    let work = work_dir.join(format!("bench-{run_id}"));
    let instances = instances.to_vec();
    tokio::task::spawn_blocking(move || {
        let loaded = producer::run(&cfg, &CancellationToken::new())?;
        let mut runs: Vec<ScaleRun> = Vec::new();
        for k in instances {
            let dir = work.join(format!("x{k}"));
            let group = format!("bench-scale{k}-{run_id}");
            let children = (0..k)
                .map(|i| {
                    let args = consume_args(&topic, &group, &dir, &dir, &format!("state-{i}"));
                    Child::spawn(&args, &format!("-{i}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (mut wall, mut cpu, mut rss) = (0f64, 0f64, Vec::new());
            for c in children {
                let (w, c, r) = c.wait()?;
                wall = wall.max(w);
                cpu += c;
                rss.push(r);
            }
            let _ = std::fs::remove_dir_all(&dir);
            let measurement = Measurement {
                name: format!(
                    "landfall consume, {k} instance{}",
                    if k == 1 { "" } else { "s" }
                ),
                events,
                bytes: loaded.bytes_committed,
                wall_secs: wall,
                cpu_secs: cpu,
                broker_cpu_secs: None,
            };
            let speedup = runs.first().map_or(1.0, |one| {
                measurement.events_per_sec() / one.measurement.events_per_sec()
            });
            runs.push(ScaleRun {
                instances: k,
                measurement,
                peak_rss_mb: rss,
                speedup,
            });
        }
        let _ = std::fs::remove_dir_all(&work);
        Ok(ScaleReport {
            events,
            partitions,
            runs,
        })
    })
    .await
    .map_err(|e| BenchError::Thread(e.to_string()))?
}

/// The table of a scale run.
pub fn scale_table(r: &ScaleReport) -> String {
    let rows: Vec<Measurement> = r.runs.iter().map(|x| x.measurement.clone()).collect();
    let mut out = super::table(&rows);
    for x in &r.runs {
        out.push_str(&format!(
            "{} instance(s): {:.2}x the single instance; peak RSS per instance {:?} MB\n",
            x.instances,
            x.speedup,
            x.peak_rss_mb
                .iter()
                .map(|m| (m * 10.0).round() / 10.0)
                .collect::<Vec<_>>()
        ));
    }
    out
}
