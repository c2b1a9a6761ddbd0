//! Checks on a file's pages that the Parquet reader makes too late: run before any value is
//! decoded, so a damaged file costs memory in proportion to its size.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::Type;
use parquet::column::page::{Page, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

/// One opened file shared by the page checks and the reader that decodes it.
pub struct Shared<R>(pub Arc<R>);

impl<R: Length> Length for Shared<R> {
    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl<R: ChunkReader> ChunkReader for Shared<R> {
    type T = R::T;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        self.0.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// Refuses a dictionary page that declares more entries than its bytes can hold, in the row
/// groups `groups` names (all when `None`). parquet 60 sizes a dictionary by the count in its
/// page header before it decodes an entry: a 4 KB file the fuzz target found declares 1.6
/// billion INT64 entries, and reading it allocated 13 GB. Only the page headers are parsed,
/// and only dictionary pages are decompressed, once more than the reader will.
pub fn check_dictionaries<R: ChunkReader + 'static>(
    file: &Arc<R>,
    meta: &ParquetMetaData,
    groups: Option<&[usize]>,
) -> Result<()> {
    for (i, group) in meta.row_groups().iter().enumerate() {
        if groups.is_some_and(|g| !g.contains(&i)) {
            continue;
        }
        let rows = usize::try_from(group.num_rows()).unwrap_or(0);
        for column in group.columns() {
            let mut pages = SerializedPageReader::new(file.clone(), column, rows, None)?;
            while let Some(page) = pages.peek_next_page()? {
                if !page.is_dict {
                    pages.skip_next_page()?;
                    continue;
                }
                if let Some(Page::DictionaryPage {
                    buf, num_values, ..
                }) = pages.get_next_page()?
                {
                    check_dictionary(column, &buf, num_values)?;
                }
            }
        }
    }
    Ok(())
}

/// A PLAIN dictionary entry takes at least its type's width, or a byte array's 4-byte length.
fn check_dictionary(column: &ColumnChunkMetaData, buf: &Bytes, entries: u32) -> Result<()> {
    let bits: u64 = match column.column_type() {
        Type::BOOLEAN => 1,
        Type::INT32 | Type::FLOAT | Type::BYTE_ARRAY => 32,
        Type::INT64 | Type::DOUBLE => 64,
        Type::INT96 => 96,
        Type::FIXED_LEN_BYTE_ARRAY => {
            (8 * u64::try_from(column.column_descr().type_length()).unwrap_or(0)).max(1)
        }
    };
    if u64::from(entries) * bits > 8 * buf.len() as u64 {
        return Err(ParquetError::General(format!(
            "column {}: the dictionary page declares {entries} entries in {} bytes",
            column.column_path(),
            buf.len()
        )));
    }
    Ok(())
}
