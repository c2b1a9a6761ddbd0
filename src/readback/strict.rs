//! A Parquet file opened so that reading past its end is an error, never an endless loop.
//!
//! parquet 60 decodes page headers from a stream, and skips a field by copying its declared
//! length into a sink: past the end of the file that copies nothing and succeeds. So a damaged
//! page header whose list claims two billion elements made `read_window_file` spin for hours,
//! one `read(2)` per element (the fuzz target found it). A reader of this file fails at the
//! first read past the end instead, which the decoder returns as an error.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use bytes::Bytes;
use parquet::errors::{ParquetError, Result};
use parquet::file::reader::{ChunkReader, Length};

pub struct StrictFile {
    file: File,
    len: u64,
}

impl StrictFile {
    pub fn new(file: File) -> std::io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(StrictFile { file, len })
    }
}

impl Length for StrictFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// Reads at most up to the end of the file; a read asked for there is an error.
pub struct BoundedRead<R = BufReader<File>> {
    inner: R,
    left: u64,
}

impl<R: Read> BoundedRead<R> {
    /// `inner`, which holds `left` bytes up to the end of the file.
    pub fn new(inner: R, left: u64) -> Self {
        BoundedRead { inner, left }
    }
}

impl<R: Read> Read for BoundedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            return Err(past_the_end());
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            // The file shrank under the reader.
            return Err(past_the_end());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub fn past_the_end() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "a read past the end of the file (a damaged page header)",
    )
}

impl ChunkReader for StrictFile {
    type T = BoundedRead;

    fn get_read(&self, start: u64) -> Result<BoundedRead> {
        let mut file = self.file.try_clone()?;
        file.seek(SeekFrom::Start(start))?;
        Ok(BoundedRead {
            inner: BufReader::new(file),
            left: self.len.saturating_sub(start),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes> {
        let end = start.checked_add(length as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err(ParquetError::EOF(format!(
                "{length} bytes at {start} lie past the end of the file ({} bytes)",
                self.len
            )));
        }
        let mut buf = vec![0; length];
        let mut read = self.get_read(start)?;
        read.read_exact(&mut buf)?;
        Ok(buf.into())
    }
}
