//! Checks on a file's pages that the Parquet reader makes too late: run before any value is
//! decoded, so a damaged file costs memory in proportion to its size.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::basic::Type;
use parquet::column::page::{Page, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;

use super::strict::BoundedRead;

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
/// billion INT64 entries, and reading it allocated 13 GB. Each row group's column chunks are
/// read in one request; only the page headers are parsed, and only dictionary pages are
/// decompressed, once more than the reader will.
pub fn check_dictionaries<R: ChunkReader>(
    file: &R,
    meta: &ParquetMetaData,
    groups: Option<&[usize]>,
) -> Result<()> {
    for (i, group) in meta.row_groups().iter().enumerate() {
        if groups.is_some_and(|g| !g.contains(&i)) {
            continue;
        }
        let chunks = Arc::new(Chunks::read(file, group.columns())?);
        let rows = usize::try_from(group.num_rows()).unwrap_or(0);
        for column in group.columns() {
            let mut pages = SerializedPageReader::new(chunks.clone(), column, rows, None)?;
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

/// The bytes of a row group's column chunks, read at the file's offsets. As for the file
/// itself, a read past what was fetched is an error, not an empty read (see `strict`).
struct Chunks {
    start: u64,
    bytes: Bytes,
}

impl Chunks {
    fn read<R: ChunkReader>(file: &R, columns: &[ColumnChunkMetaData]) -> Result<Chunks> {
        let (mut start, mut end) = (u64::MAX, 0u64);
        for (from, len) in columns.iter().map(ColumnChunkMetaData::byte_range) {
            start = start.min(from);
            end = end.max(from.saturating_add(len));
        }
        if start >= end {
            return Ok(Chunks {
                start: 0,
                bytes: Bytes::new(),
            });
        }
        if end > file.len() {
            return Err(ParquetError::EOF(format!(
                "column chunks end at byte {end}, past the end of the file ({} bytes)",
                file.len()
            )));
        }
        let bytes = file.get_bytes(start, (end - start) as usize)?;
        Ok(Chunks { start, bytes })
    }
}

impl Length for Chunks {
    fn len(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

impl ChunkReader for Chunks {
    type T = BoundedRead<bytes::buf::Reader<Bytes>>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        let rest = self.get_bytes(start, self.len().saturating_sub(start) as usize)?;
        let left = rest.len() as u64;
        Ok(BoundedRead::new(rest.reader(), left))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let end = start.checked_add(length as u64);
        if start < self.start || end.is_none_or(|end| end > self.len()) {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at {start} lie outside the column chunks (bytes {} to {})",
                self.start,
                self.len()
            )));
        }
        let from = (start - self.start) as usize;
        Ok(self.bytes.slice(from..from + length))
    }
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
