//! A Parquet table file of one dataset version, read with positioned reads.
//!
//! Clones of a `File` share one file offset, so the seek-then-read of
//! Parquet's own `ChunkReader for File` races when two requests read one
//! table at once. Positioned reads (`pread`) have no shared cursor. The
//! footer is parsed once, at open.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::Array;
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, Length};

/// An open table file and its parsed footer; cheap to clone.
#[derive(Debug, Clone)]
pub struct TableFile {
    file: Arc<File>,
    len: u64,
    metadata: ArrowReaderMetadata,
}

impl TableFile {
    pub(crate) fn new(file: File, metadata: ParquetMetaData) -> Result<Self, ParquetError> {
        let len = file.metadata()?.len();
        let metadata =
            ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::default())?;
        Ok(Self {
            file: Arc::new(file),
            len,
            metadata,
        })
    }

    /// The open file (read it with positioned reads only).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The table's Arrow schema.
    pub fn schema(&self) -> &SchemaRef {
        self.metadata.schema()
    }

    /// A reader of the table; nothing is read until it is built and polled.
    pub fn reader(&self) -> ParquetRecordBatchReaderBuilder<TableFile> {
        ParquetRecordBatchReaderBuilder::new_with_metadata(self.clone(), self.metadata.clone())
    }

    /// The largest value of a `UInt32` column, from the footer's row group
    /// statistics (nothing else is read); `None` if the column is absent,
    /// of another type, or a row group has no statistics for it.
    pub fn largest_u32(&self, column: &str) -> Option<u32> {
        let parquet = self.metadata.metadata();
        let converter = StatisticsConverter::try_new(
            column,
            self.schema(),
            parquet.file_metadata().schema_descr(),
        )
        .ok()?;
        let maxes = converter.row_group_maxes(parquet.row_groups()).ok()?;
        let maxes = maxes.as_primitive_opt::<UInt32Type>()?;
        if maxes.null_count() > 0 {
            return None;
        }
        Some(maxes.values().iter().copied().max().unwrap_or(0))
    }
}

impl Length for TableFile {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for TableFile {
    type T = PositionedReader;

    fn get_read(&self, start: u64) -> parquet::errors::Result<PositionedReader> {
        Ok(PositionedReader {
            file: self.file.clone(),
            position: start,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buffer = vec![0; length];
        self.file.read_exact_at(&mut buffer, start)?;
        Ok(buffer.into())
    }
}

/// A reader from a position of a table file, with its own cursor.
pub struct PositionedReader {
    file: Arc<File>,
    position: u64,
}

impl fmt::Debug for PositionedReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PositionedReader")
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Read for PositionedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.file.read_at(buf, self.position)?;
        self.position += read as u64;
        Ok(read)
    }
}
