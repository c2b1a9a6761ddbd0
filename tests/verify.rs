//! `landfall verify` can fail: a correct output, damaged in six ways, is reported each time,
//! with the window, partition and offsets involved.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use support::harness::*;
use support::output::*;
use support::*;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A copy of a landed output, to damage.
fn copy_of(d: &Dirs) -> Dirs {
    let c = dirs();
    copy_tree(&d.report, &c.report);
    copy_tree(&d.rejects, &c.rejects);
    c
}

/// Rewrites a Parquet file through `edit`, keeping its schema and footer.
fn rewrite(path: &Path, edit: impl Fn(RecordBatch) -> RecordBatch) {
    rewrite_with(path, edit, |_| {});
}

/// Rewrites a Parquet file through `edit`, keeping its schema, and its footer's key-value
/// entries through `edit_footer`.
fn rewrite_with(
    path: &Path,
    edit: impl Fn(RecordBatch) -> RecordBatch,
    edit_footer: impl Fn(&mut Vec<KeyValue>),
) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let mut kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    edit_footer(&mut kv);
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    for b in batches {
        w.write(&edit(b)).unwrap();
    }
    w.close().unwrap();
    std::fs::write(path, out).unwrap();
}

/// Replaces column `name` of every batch with `f(batch, column)`.
fn with_column(b: RecordBatch, name: &str, f: impl Fn(&ArrayRef) -> ArrayRef) -> RecordBatch {
    let i = b.schema().index_of(name).unwrap();
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    cols[i] = f(&cols[i]);
    RecordBatch::try_new(b.schema(), cols).unwrap()
}

fn damaged(topic: &str, group: &str, d: &Dirs, ledger: &mut Ledger, kind: &str) {
    let v = verify(topic, Some(group), d);
    ledger.verify_runs += 1;
    ledger.faults += 1;
    assert_eq!(
        v.exit,
        Some(1),
        "verify did not fail on {kind}: {}",
        v.report
    );
    assert!(
        v.kinds.contains_key(kind),
        "verify did not report {kind}: {:?}",
        v.kinds
    );
    for disc in v.report["discrepancies"].as_array().unwrap() {
        assert!(disc["partition"].as_i64().unwrap() >= 0, "{disc}");
        assert!(!disc["offsets"].is_null(), "no offsets in {disc}");
        assert!(!disc["detail"].as_str().unwrap().is_empty());
    }
    eprintln!("{kind}: {:?}", v.kinds);
}

#[test]
fn verify_reports_a_deleted_copied_altered_or_missing_file_or_row() {
    let mut ledger = Ledger::new("verify_can_fail");
    let topic = unique_topic("damage");
    produce_golden(&topic, 30_000);
    let d = dirs();
    let group = format!("{topic}-g");
    consume_to_end(&topic, &group, &d);
    assert_verified(&topic, Some(&group), &d, &mut ledger);
    let files: Vec<PathBuf> = parquet_files(&d.report);
    let pick = &files[files.len() / 2];

    // 1. A window file deleted.
    let c = copy_of(&d);
    std::fs::remove_file(c.report.join(pick)).unwrap();
    damaged(&topic, &group, &c, &mut ledger, "missing_window_file");

    // 2. A window file copied under a new name.
    let c = copy_of(&d);
    let copy = c
        .report
        .join(pick)
        .with_file_name("copy-of-a-window.parquet");
    std::fs::copy(c.report.join(pick), copy).unwrap();
    damaged(&topic, &group, &c, &mut ledger, "duplicate_window_file");

    // 3. One aggregate changed: a count one higher.
    let c = copy_of(&d);
    rewrite(&c.report.join(pick), |b| {
        let i = b.schema().index_of("total_count").unwrap();
        let counts = b.column(i).as_any().downcast_ref::<Int64Array>().unwrap();
        let bumped: Int64Array = (0..counts.len())
            .map(|r| Some(counts.value(r) + i64::from(r == 0)))
            .collect();
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        cols[i] = Arc::new(bumped);
        RecordBatch::try_new(b.schema(), cols).unwrap()
    });
    damaged(&topic, &group, &c, &mut ledger, "aggregate_mismatch");

    // 4. One reject row removed from a file of several.
    let c = copy_of(&d);
    let rejects = parquet_files(&c.rejects);
    let target = rejects
        .iter()
        .map(|f| c.rejects.join(f))
        .find(|f| {
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .metadata()
                .file_metadata()
                .num_rows()
                > 1
        })
        .expect("a reject file with two rows or more");
    rewrite(&target, |b| b.slice(1, b.num_rows() - 1));
    damaged(&topic, &group, &c, &mut ledger, "missing_reject");

    // 5. A sum that overflowed: negative, with positive minima and maxima (what an i64 that
    //    wrapped leaves), in a file whose other columns are intact.
    let c = copy_of(&d);
    rewrite(&c.report.join(pick), |b| {
        with_column(b, "sum_duration", |col| {
            let sums = col.as_any().downcast_ref::<Decimal128Array>().unwrap();
            let wrapped: Decimal128Array = (0..sums.len())
                .map(|r| Some(if r == 0 { -123_456_789 } else { sums.value(r) }))
                .collect::<Decimal128Array>()
                .with_precision_and_scale(18, 3)
                .unwrap();
            Arc::new(wrapped)
        })
    });
    damaged(&topic, &group, &c, &mut ledger, "aggregate_invalid");

    // 6. One window's partition files enriched from two campaign tables: in one of them,
    //    campaign rows moved to another network, under another table checksum.
    let c = copy_of(&d);
    // Window files are named `<topic>-pNNNN-<window start>.parquet`.
    let by_window = |f: &PathBuf| {
        let name = f.to_string_lossy();
        name.rsplit('-').next().unwrap_or_default().to_string()
    };
    let shared = files
        .iter()
        .find(|f| {
            files
                .iter()
                .filter(|g| by_window(g) == by_window(f))
                .count()
                > 1
        })
        .expect("a window with files from two partitions");
    rewrite_with(
        &c.report.join(shared),
        |b| {
            with_column(b, "network_id", |col| {
                let nets = col.as_any().downcast_ref::<Int64Array>().unwrap();
                Arc::new(
                    (0..nets.len())
                        .map(|r| Some(nets.value(r) + 100))
                        .collect::<Int64Array>(),
                )
            })
        },
        |kv| {
            for e in kv.iter_mut() {
                if e.key == "landfall.campaigns_sha256" {
                    e.value = Some("0".repeat(64));
                }
            }
        },
    );
    damaged(&topic, &group, &c, &mut ledger, "mixed_campaign_tables");
    ledger.book();
}
