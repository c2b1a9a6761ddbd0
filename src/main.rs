//! The `landfall` binary: parses the command line, dispatches, and maps errors to exit codes
//! (see `landfall::error`: 0 success, 1 failure, 2 bad usage or configuration, 3 Kafka
//! unreachable).

use std::process::ExitCode;

use tracing::info;
use tracing_subscriber::EnvFilter;

use landfall::cli::{BenchCommand, Command, LogFormat, ReportFormat, WindowsFormat};
use landfall::ops::{kafka, metrics, peek, shutdown};
use landfall::{bench, config, consume, produce::producer, query, verify, Error, Result};

/// `context` for any error that displays: what was being done, then why it failed.
trait Context<T> {
    fn context(self, what: &'static str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &'static str) -> Result<T> {
        self.map_err(|e| Error::Other {
            what,
            detail: e.to_string(),
        })
    }
}

/// mimalloc rather than glibc's malloc: measured in docs/performance.md ("Window density"), 14%
/// less CPU for a drain that lands many small files.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("LANDFALL_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a pipe gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    // Every value clap rejects, with every problem the settings' checks find, at once.
    let (cli, rejected) = match landfall::cli::lenient::parse_from(std::env::args_os().collect()) {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    if !rejected.is_empty() {
        let mut problems = rejected;
        problems.extend(config::problems_of(&cli.command));
        eprintln!("landfall: error: {}", config::ConfigError { problems });
        return ExitCode::from(2);
    }
    init_logging(cli.log_format);
    landfall::readback::quiet_handled_panics();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("landfall: error: could not start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli.command));
    // For the benchmarks: this process's own peak RSS, which a parent cannot see exactly.
    if let Ok(path) = std::env::var("LANDFALL_PEAK_RSS_FILE") {
        if let Some(kb) = bench::own_peak_rss_kb() {
            let _ = std::fs::write(path, format!("{kb}\n"));
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once: many messages already quote their source.
            let mut msg = e.to_string();
            let causes = std::iter::successors(std::error::Error::source(&e), |c| c.source());
            for cause in causes {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("landfall: error: {msg}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Produce(args) => produce(args).await,
        Command::Consume(args) => consume(args).await,
        Command::Windows(args) => windows(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Peek(args) => peek(args).await,
        Command::Verify(args) => verify(args).await,
        Command::Bench(BenchCommand::All(args)) => bench_all(args).await,
        Command::Bench(BenchCommand::Consume(args)) => bench_consume(args).await,
        Command::Bench(BenchCommand::Scale(args)) => bench_scale(args).await,
        Command::Bench(BenchCommand::Produce(args)) => bench_produce(args).await,
    }
}

async fn produce(args: landfall::cli::ProduceArgs) -> Result<()> {
    let (cfg, topic) = config::produce_config(&args)?;
    kafka::log_librdkafka();
    let stop = shutdown::install().context("installing signal handlers")?;
    info!(
        seed = cfg.generator.seed,
        topic = %cfg.kafka.topic,
        brokers = %cfg.kafka.brokers,
        count = cfg.count,
        "producer starting"
    );
    if let Some(t) = topic {
        kafka::create_topic(&cfg.kafka, t.partitions, t.replication).await?;
    }
    if let Some(addr) = cfg.http_addr {
        metrics::serve(addr, &metrics::producer().process, None, stop.clone()).await?;
    }
    let seed = cfg.generator.seed;
    let summary = tokio::task::spawn_blocking(move || producer::run(&cfg, &stop))
        .await
        .context("producer thread")??;
    println!(
        "produced {} records in {:.1} s (seed {seed}): committed {} records in {} transactions, \
         aborted {} records in {} transactions, {} transactions retried",
        summary.generated,
        summary.elapsed.as_secs_f64(),
        summary.committed_records,
        summary.committed_txns,
        summary.aborted_records,
        summary.aborted_txns,
        summary.retried_txns,
    );
    Ok(())
}

async fn consume(args: landfall::cli::ConsumeArgs) -> Result<()> {
    let cfg = config::consume_config(&args)?;
    kafka::log_librdkafka();
    let stop = shutdown::install().context("installing signal handlers")?;
    if let Some(addr) = cfg.http_addr {
        let report = Some(cfg.output.clone());
        metrics::serve(addr, &metrics::consumer().process, report, stop.clone()).await?;
    }
    let (out, rejects) = (cfg.output.clone(), cfg.rejects.clone());
    let summary = tokio::task::spawn_blocking(move || consume::run(cfg, &stop))
        .await
        .context("consumer thread")??;
    let t = &summary.totals;
    let rejected: u64 = t.rejects.values().sum();
    println!(
        "consumed {} records in {:.1} s: {} counted in windows ({} with an unknown campaign), \
         {} rejected {:?}; {} window files landed ({} already there), {} reject files, in {} \
         groups; report: {}, rejects: {}",
        t.records,
        summary.elapsed.as_secs_f64(),
        t.counted,
        t.unknown_campaign,
        rejected,
        t.rejects,
        t.windows_landed,
        t.windows_already_there,
        t.reject_files_landed,
        t.groups,
        out,
        rejects
    );
    Ok(())
}

async fn windows(args: landfall::cli::WindowsArgs) -> Result<()> {
    let q = config::windows_query(&args, chrono::Utc::now().timestamp_micros())?;
    let root = config::report_root(&args.output_dir, &args.store)?;
    let dir = root.clone();
    let answer = tokio::task::spawn_blocking(move || query::query(&dir, &q))
        .await
        .context("reader thread")??;
    if args.explain {
        eprintln!("{}", answer.scan);
    }
    let dir = root;
    if answer.rows.is_empty() {
        if answer.scan.files_listed == 0 && answer.scan.dirs_skipped == 0 {
            eprintln!(
                "no finalized window files under {dir} yet; run `landfall consume`, \
                 or pass the right --output-dir"
            );
        } else {
            eprintln!("no finalized windows under {dir} match the filters");
        }
    }
    match args.format {
        WindowsFormat::Json => println!(
            "{}",
            query::render_json(&answer.rows).context("rendering JSON")?
        ),
        WindowsFormat::Csv => print!(
            "{}",
            query::render_csv(&answer.rows).context("rendering CSV")?
        ),
        WindowsFormat::Table if answer.rows.is_empty() => {}
        WindowsFormat::Table => {
            print!("{}", query::render_table(&answer.rows, args.limit));
            println!("finalized windows are in {dir}");
        }
    }
    Ok(())
}

async fn serve(args: landfall::cli::ServeArgs) -> Result<()> {
    let addr = config::serve_addr(&args)?;
    let root = config::report_root(&args.output_dir, &args.store)?;
    if root.local().is_some_and(|d| !d.is_dir()) {
        return Err(landfall::readback::ReadError::Missing(args.output_dir).into());
    }
    let stop = shutdown::install().context("installing signal handlers")?;
    let server = metrics::serve_windows(addr, root, stop.clone()).await?;
    stop.cancelled().await;
    server.await.context("HTTP server")?;
    Ok(())
}

async fn peek(args: landfall::cli::PeekArgs) -> Result<()> {
    let kafka = config::kafka_only(&args.kafka)?;
    let seen = tokio::task::spawn_blocking(move || peek::peek(&kafka, args.limit))
        .await
        .context("reader thread")??;
    let total: u64 = seen.per_partition.values().sum();
    println!("read_committed sees {total} records");
    for (p, n) in &seen.per_partition {
        println!("  partition {p}: {n}");
    }
    for (p, o, text) in &seen.first {
        println!("  [{p}@{o}] {text}");
    }
    Ok(())
}

async fn verify(args: landfall::cli::VerifyArgs) -> Result<()> {
    // The group's commit metadata names the window settings; read it first.
    let signature = match &args.group {
        Some(group) => {
            let kafka = config::kafka_only(&args.kafka)?;
            let group = group.clone();
            let committed =
                tokio::task::spawn_blocking(move || kafka::committed_offsets(&kafka, &group))
                    .await
                    .context("reader thread")??;
            committed
                .values()
                .flatten()
                .find_map(|(_, meta)| landfall::consume::commit::CommitPoint::parse_metadata(meta))
                .map(|m| m.settings)
        }
        None => None,
    };
    let cfg = config::verify_config(&args, signature.as_deref())?;
    let report = tokio::task::spawn_blocking(move || verify::verify(&cfg))
        .await
        .context("verify thread")??;
    match args.format {
        ReportFormat::Text => print!("{}", report.render(args.max_listed)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).context("rendering JSON")?
        ),
    }
    if report.clean() {
        Ok(())
    } else {
        Err(Error::Discrepancies(report.discrepancies.len()))
    }
}

async fn bench_all(args: landfall::cli::BenchAllArgs) -> Result<()> {
    let kafka = config::kafka_only(&args.common.kafka)?;
    let r = bench::all(
        &kafka,
        args.events,
        args.common.partitions,
        args.producer.txn_size,
        args.producer.producers,
        &args.work_dir,
    )
    .await?;
    print!("{}", bench::all_table(&r));
    write_json(args.common.json, &r)
}

async fn bench_consume(args: landfall::cli::BenchConsumeArgs) -> Result<()> {
    let kafka = config::kafka_only(&args.common.kafka)?;
    if let Some(bad) = args
        .sim_events_per_sec
        .iter()
        .find(|d| !(d.is_finite() && **d > 0.0))
    {
        return Err(config::ConfigError {
            problems: vec![format!(
                "--sim-events-per-sec (LANDFALL_BENCH_SIM_EVENTS_PER_SEC) = {bad}: must be \
                 positive numbers of records per simulated second"
            )],
        }
        .into());
    }
    let mut reports = Vec::new();
    for &density in &args.sim_events_per_sec {
        println!("== {density} records per simulated second");
        let r = bench::consume(
            &kafka,
            args.events,
            args.common.partitions,
            &args.work_dir,
            density,
            args.object_store.as_deref(),
            args.rounds,
        )
        .await?;
        print!("{}", bench::consume_summary(&r));
        reports.push(r);
    }
    if !args.keep_output {
        bench::remove_outputs(&reports.iter().collect::<Vec<_>>());
    }
    print!("{}", bench::per_file_cost(&reports));
    write_json(args.common.json, &reports)
}

async fn bench_scale(args: landfall::cli::BenchScaleArgs) -> Result<()> {
    let kafka = config::kafka_only(&args.common.kafka)?;
    let r = bench::scale(
        &kafka,
        args.events,
        args.common.partitions,
        &args.instances,
        &args.work_dir,
    )
    .await?;
    print!("{}", bench::scale_table(&r));
    write_json(args.common.json, &r)
}

async fn bench_produce(args: landfall::cli::BenchProduceArgs) -> Result<()> {
    let kafka = config::kafka_only(&args.common.kafka)?;
    let report = bench::produce(
        &kafka,
        args.events,
        args.common.partitions,
        args.producer.txn_size,
        args.producer.producers,
    )
    .await?;
    print!(
        "{}",
        bench::table(&[report.bare.clone(), report.landfall.clone()])
    );
    println!(
        "produce_ratio (landfall / bare) = {:.3}",
        report.produce_ratio
    );
    write_json(args.common.json, &report)
}

/// Writes a benchmark's figures as JSON, if a path was given.
fn write_json(path: Option<std::path::PathBuf>, value: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        let json = serde_json::to_vec_pretty(value).context("encoding the figures")?;
        std::fs::write(&path, json).map_err(|e| Error::Other {
            what: "writing the figures",
            detail: format!("{}: {e}", path.display()),
        })?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
