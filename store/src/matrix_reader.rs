//! `matrix.arrow` memory-mapped and read zero-copy: a run of consecutive
//! cells is a slice of one or two stored batches, never a copy.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::convert::fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::{root_as_footer, Block};
use arrow_schema::{ArrowError, SchemaRef};

use crate::fault_guard::GuardedRegion;
use crate::{StoreError, VERSION_METADATA_KEY};

pub struct Matrix {
    path: PathBuf,
    /// The mapping, held also by `buffer` and every slice read from it.
    file: Arc<MappedFile>,
    buffer: Buffer,
    schema: SchemaRef,
    decoder: FileDecoder,
    blocks: Vec<Block>,
    /// Decoded (and validated) on first use; decoding is cheap but not free.
    batches: Vec<OnceLock<RecordBatch>>,
    cells_per_batch: u64,
    n_cells: u64,
}

impl fmt::Debug for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Matrix")
            .field("path", &self.path)
            .field("n_cells", &self.n_cells)
            .field("bytes", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

/// Opening found a file stamped with another version than the manifest's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VersionMismatch {
    pub file: PathBuf,
    pub found: Option<String>,
}

impl Matrix {
    pub(crate) fn open(
        path: &Path,
        version: &str,
        cells_per_batch: u32,
        n_cells: u64,
    ) -> Result<Result<Self, VersionMismatch>, StoreError> {
        let file = Arc::new(MappedFile::open(path)?);
        let buffer = Buffer::from(bytes::Bytes::from_owner(SharedMap(Arc::clone(&file))));
        let (decoder, blocks, schema) = read_footer(&buffer).map_err(StoreError::arrow(path))?;
        let found = schema.metadata().get(VERSION_METADATA_KEY);
        if found.map(String::as_str) != Some(version) {
            return Ok(Err(VersionMismatch {
                file: path.to_owned(),
                found: found.cloned(),
            }));
        }
        Ok(Ok(Self {
            path: path.to_owned(),
            file,
            batches: blocks.iter().map(|_| OnceLock::new()).collect(),
            buffer,
            schema,
            decoder,
            blocks,
            cells_per_batch: u64::from(cells_per_batch),
            n_cells,
        }))
    }

    pub fn n_cells(&self) -> u64 {
        self.n_cells
    }

    /// Fails if a read of the matrix faulted because its file was
    /// truncated under the server; call it after using what was read.
    pub fn check_intact(&self) -> Result<(), StoreError> {
        match self
            .file
            .region
            .as_ref()
            .is_some_and(GuardedRegion::is_damaged)
        {
            true => Err(StoreError::Truncated(self.path.clone())),
            false => Ok(()),
        }
    }

    pub fn n_batches(&self) -> usize {
        self.blocks.len()
    }

    /// The stored schema, with the dataset version in its metadata.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Stored batch `index`, decoded and validated once.
    pub fn batch(&self, index: usize) -> Result<&RecordBatch, StoreError> {
        let slot = self.batches.get(index).ok_or_else(|| {
            StoreError::InvalidInput(format!(
                "batch {index} requested of a matrix with {} batches",
                self.blocks.len()
            ))
        })?;
        if let Some(batch) = slot.get() {
            return Ok(batch);
        }
        let batch = self.decode(index).map_err(StoreError::arrow(&self.path))?;
        Ok(slot.get_or_init(|| batch))
    }

    fn decode(&self, index: usize) -> Result<RecordBatch, ArrowError> {
        let block = &self.blocks[index];
        let length = block.metaDataLength() as usize + block.bodyLength() as usize;
        let offset = usize::try_from(block.offset())
            .map_err(|_| ArrowError::IpcError(format!("negative offset of batch {index}")))?;
        if offset
            .checked_add(length)
            .is_none_or(|end| end > self.buffer.len())
        {
            return Err(ArrowError::IpcError(format!(
                "batch {index} lies beyond the end of the file"
            )));
        }
        let data = self.buffer.slice_with_length(offset, length);
        self.decoder
            .read_record_batch(block, &data)?
            .ok_or_else(|| ArrowError::IpcError(format!("batch {index} is empty")))
    }

    /// Cells `cells` as zero-copy slices of the stored batches, in order.
    pub fn cells(&self, cells: Range<u64>) -> Result<Vec<RecordBatch>, StoreError> {
        if cells.start > cells.end || cells.end > self.n_cells {
            return Err(StoreError::InvalidInput(format!(
                "cells {cells:?} requested of a matrix of {} cells",
                self.n_cells
            )));
        }
        let mut slices = Vec::new();
        let mut next = cells.start;
        while next < cells.end {
            let index = next / self.cells_per_batch;
            let batch_start = index * self.cells_per_batch;
            let batch = self.batch(index as usize)?;
            let end = cells.end.min(batch_start + batch.num_rows() as u64);
            if end <= next {
                return Err(StoreError::InvalidInput(format!(
                    "stored batch {index} is shorter than the manifest says"
                )));
            }
            let offset = (next - batch_start) as usize;
            slices.push(batch.slice(offset, (end - next) as usize));
            next = end;
        }
        Ok(slices)
    }

    /// Asks the kernel to start reading the pages that hold `cells`
    /// (`MADV_WILLNEED`), so reading the next fetch from a cold disk
    /// overlaps with sending the current one. Advice only: it never fails
    /// a read, so its errors are ignored.
    pub fn prefetch(&self, cells: Range<u64>) -> Result<(), StoreError> {
        for slice in self.cells(cells)? {
            for column in slice.columns() {
                let list = column.as_list::<i32>();
                let offsets = list.value_offsets();
                let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
                let items = list.values().to_data();
                let width = items.data_type().primitive_width().unwrap_or(1);
                let bytes = items.buffers()[0].as_slice();
                let start = (items.offset() + first) * width;
                let end = ((items.offset() + last) * width).min(bytes.len());
                advise_will_need(&bytes[start.min(end)..end]);
            }
        }
        Ok(())
    }
}

/// A file mapped read-only, its mapping guarded against truncation (see
/// `fault_guard`). The guard is dropped before the mapping (field order).
struct MappedFile {
    region: Option<GuardedRegion>,
    map: memmap2::Mmap,
}

impl MappedFile {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let file = File::open(path).map_err(StoreError::io(path))?;
        // SAFETY: the bytes stay fixed while mapped: cellflight never writes
        // to a published file (a new version is written elsewhere and renamed
        // over; the old inode lives on while mapped). A file truncated by
        // someone else would fault on the lost pages with SIGBUS, which the
        // guard registered below turns into a `Truncated` error.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(StoreError::io(path))?;
        let region = GuardedRegion::register(map.as_ptr(), map.len());
        Ok(Self { region, map })
    }
}

/// The mapping as the owner of the bytes a `Buffer` reads.
struct SharedMap(Arc<MappedFile>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

fn advise_will_need(bytes: &[u8]) {
    let page = rustix::param::page_size();
    let start = bytes.as_ptr() as usize;
    let aligned = start & !(page - 1);
    // SAFETY: `bytes` lies in this matrix's read-only file mapping, which
    // starts on a page boundary, so the range rounded down to its page
    // stays inside the mapping; WILLNEED only schedules reads and never
    // changes what the memory holds.
    unsafe {
        let _ = rustix::mm::madvise(
            aligned as *mut std::ffi::c_void,
            bytes.len() + (start - aligned),
            rustix::mm::Advice::WillNeed,
        );
    }
}

fn read_footer(buffer: &Buffer) -> Result<(FileDecoder, Vec<Block>, SchemaRef), ArrowError> {
    let malformed = || ArrowError::IpcError("not an Arrow IPC file".into());
    let trailer_start = buffer.len().checked_sub(10).ok_or_else(malformed)?;
    let trailer: [u8; 10] = buffer[trailer_start..]
        .try_into()
        .map_err(|_| malformed())?;
    let footer_len = read_footer_length(trailer)?;
    let footer_start = trailer_start
        .checked_sub(footer_len)
        .ok_or_else(malformed)?;
    let footer = root_as_footer(&buffer[footer_start..trailer_start])
        .map_err(|e| ArrowError::IpcError(format!("unreadable IPC footer: {e}")))?;
    let schema = Arc::new(fb_to_schema(footer.schema().ok_or_else(malformed)?));
    let decoder = FileDecoder::new(schema.clone(), footer.version()).with_require_alignment(true);
    let blocks = footer
        .recordBatches()
        .map(|b| b.iter().copied().collect())
        .unwrap_or_default();
    Ok((decoder, blocks, schema))
}

/// Sorted cell ids as ranges of consecutive ids: what [`Matrix::cells`]
/// and [`Matrix::prefetch`] take.
pub fn runs(sorted: &[u64]) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for &id in sorted {
        match runs.last_mut() {
            Some(run) if run.end == id => run.end += 1,
            _ => runs.push(id..id + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_coalesce_into_runs() {
        assert_eq!(runs(&[3, 4, 5, 9, 10, 12]), vec![3..6, 9..11, 12..13]);
        assert!(runs(&[]).is_empty());
    }
}
