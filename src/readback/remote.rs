//! A landed file in an object store, opened for the Parquet reader: one request brings the
//! file's last [`TAIL`] bytes (for a window file, all of it; for a large file, its footer),
//! and any other range is fetched when the reader asks for it. Reads past the end are errors,
//! as for a local file (see [`super::strict`]).

use std::io::Read;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::errors::{ParquetError, Result};
use parquet::file::reader::{ChunkReader, Length};

use super::strict::BoundedRead;
use crate::store::{ObjectRoot, StoreError};

/// How much of a file's end the first request brings.
pub const TAIL: u64 = 256 * 1024;

pub struct ObjectFile {
    root: Arc<ObjectRoot>,
    rel: String,
    size: u64,
    tail: Bytes,
}

impl ObjectFile {
    pub fn open(root: &Arc<ObjectRoot>, rel: &str) -> std::result::Result<Self, StoreError> {
        let (tail, size) = root.tail(rel, TAIL)?;
        Ok(ObjectFile {
            root: Arc::clone(root),
            rel: rel.to_string(),
            size,
            tail,
        })
    }

    fn tail_start(&self) -> u64 {
        self.size - self.tail.len() as u64
    }

    /// Bytes `start..end`, from the tail if it holds them, else from the store.
    fn bytes(&self, start: u64, end: u64) -> Result<Bytes> {
        if end > self.size || start > end {
            return Err(ParquetError::EOF(format!(
                "bytes {start}..{end} lie past the end of the file ({} bytes)",
                self.size
            )));
        }
        let from = self.tail_start();
        if start >= from {
            return Ok(self
                .tail
                .slice((start - from) as usize..(end - from) as usize));
        }
        self.root
            .range(&self.rel, start..end)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

impl Length for ObjectFile {
    fn len(&self) -> u64 {
        self.size
    }
}

impl ChunkReader for ObjectFile {
    type T = BoundedRead<bytes::buf::Reader<Bytes>>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        let rest = self.bytes(start.min(self.size), self.size)?;
        let left = rest.len() as u64;
        Ok(BoundedRead::new(rest.reader(), left))
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let end = start.saturating_add(length as u64);
        self.bytes(start, end)
    }
}

/// A landed file opened for reading, local or in an object store.
pub enum Opened {
    File(super::strict::StrictFile),
    Object(ObjectFile),
}

impl Length for Opened {
    fn len(&self) -> u64 {
        match self {
            Opened::File(f) => f.len(),
            Opened::Object(o) => o.len(),
        }
    }
}

impl ChunkReader for Opened {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> Result<Self::T> {
        Ok(match self {
            Opened::File(f) => Box::new(f.get_read(start)?),
            Opened::Object(o) => Box::new(o.get_read(start)?),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        match self {
            Opened::File(f) => f.get_bytes(start, length),
            Opened::Object(o) => o.get_bytes(start, length),
        }
    }
}
