//! The footer reader: any bytes under a `.parquet` name give a footer, rows or an error that
//! names the file, never a panic (the same reads `verify`, `landfall windows` and the sink's
//! "already there" check make).
#![no_main]

use std::io::Write;

use landfall::readback::{read_footer, read_reject_file, read_window_file};
use landfall::store::Root;
use libfuzzer_sys::fuzz_target;

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    // Panics the readers turn into errors (as the binary does) are not crashes; any other is.
    QUIET.call_once(landfall::readback::quiet_handled_panics);
    let mut file = tempfile::Builder::new()
        .suffix(".parquet")
        .tempfile()
        .expect("a temporary file");
    file.write_all(data).expect("write");
    let path = file.path();
    let root = Root::Local(path.parent().expect("a directory").to_path_buf());
    if let Err(e) = read_footer(&root, path) {
        assert_eq!(e.file(), Some(path));
    }
    if let Err(e) = read_window_file(&root, path) {
        assert_eq!(e.file(), Some(path));
    }
    if let Err(e) = read_reject_file(&root, path) {
        assert_eq!(e.file(), Some(path));
    }
});
