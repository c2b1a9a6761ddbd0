//! `landfall verify` can fail: a correct output, damaged in four ways, is reported each time,
//! with the window, partition and offsets involved.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
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
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(|b| b.unwrap()).collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(kv)
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema, Some(props)).unwrap();
    for b in batches {
        w.write(&edit(b)).unwrap();
    }
    w.close().unwrap();
    std::fs::write(path, out).unwrap();
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
    ledger.book();
}
