//! Where a stream's matrix rows come from. The engine reads rows only
//! through [`RowSource`]: a dataset's memory-mapped matrix, its matrix in
//! an object store (ranged reads), or a collection's members
//! (`collection_rows`).

use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch};
use cellflight_store::{runs, Dataset, Matrix, RemoteMatrix};

use crate::error::EngineError;

/// The rows of a fetch, on request. Both calls run on a blocking thread
/// (a stream's producer), never on the async runtime: they may wait on
/// page faults or the network.
pub trait RowSource: Send + Sync + fmt::Debug {
    /// The rows of `cell_ids` (ascending, distinct).
    fn read(&self, cell_ids: Vec<u64>) -> Result<FetchRows, EngineError>;

    /// Says that `cell_ids` (ascending) will be read next, so that reading
    /// them overlaps with sending the current fetch. Advice only.
    fn prefetch(&self, cell_ids: &[u64]) -> Result<(), EngineError>;

    /// Fails if rows already read were damaged under the reader (a mapped
    /// file truncated by another process reads as zeros): called after a
    /// minibatch is made from them and before it is sent.
    fn check_intact(&self) -> Result<(), EngineError>;
}

/// A dataset's memory-mapped matrix: rows are zero-copy slices of the map.
#[derive(Debug)]
pub struct MappedMatrix {
    dataset: Arc<Dataset>,
}

impl MappedMatrix {
    /// The matrix of `dataset`, if it has one (obs-only datasets don't).
    pub fn of(dataset: Arc<Dataset>) -> Option<Self> {
        dataset.matrix().is_some().then_some(Self { dataset })
    }

    fn matrix(&self) -> &Matrix {
        // `of` admits only datasets with a matrix, and a dataset's files
        // never change once opened.
        match self.dataset.matrix() {
            Some(matrix) => matrix,
            None => unreachable!("MappedMatrix::of checked the matrix"),
        }
    }
}

impl RowSource for MappedMatrix {
    fn read(&self, cell_ids: Vec<u64>) -> Result<FetchRows, EngineError> {
        let mut slices = Vec::new();
        for run in runs(&cell_ids) {
            slices.extend(self.matrix().cells(run)?);
        }
        Ok(FetchRows::new(cell_ids, slices))
    }

    fn prefetch(&self, cell_ids: &[u64]) -> Result<(), EngineError> {
        for run in runs(cell_ids) {
            self.matrix().prefetch(run)?;
        }
        Ok(())
    }

    fn check_intact(&self) -> Result<(), EngineError> {
        Ok(self.matrix().check_intact()?)
    }
}

/// A dataset's matrix in an object store: rows are read by byte ranges
/// through the server's block cache, the next fetch's in the background.
#[derive(Debug)]
pub struct RemoteRows {
    matrix: Arc<RemoteMatrix>,
}

impl RemoteRows {
    pub fn of(matrix: Arc<RemoteMatrix>) -> Self {
        Self { matrix }
    }
}

impl RowSource for RemoteRows {
    fn read(&self, cell_ids: Vec<u64>) -> Result<FetchRows, EngineError> {
        let slices = self.matrix.cells(&runs(&cell_ids))?;
        Ok(FetchRows::new(cell_ids, slices))
    }

    fn prefetch(&self, cell_ids: &[u64]) -> Result<(), EngineError> {
        self.matrix.prefetch(runs(cell_ids));
        Ok(())
    }

    /// Rows read from an object store are copies in memory: nothing can
    /// damage them under the reader.
    fn check_intact(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

/// A fetch's cells, read: row i is the cell `cell_ids[i]`, whose entries
/// are `entries[i]` in the item arrays of slice `slices[i]`.
#[derive(Debug)]
pub struct FetchRows {
    pub(crate) cell_ids: Vec<u64>,
    /// Per slice: its `indices` and `values` item arrays.
    pub(crate) items: Vec<(ArrayRef, ArrayRef)>,
    /// Per row: (slice, first entry, entries).
    pub(crate) entries: Vec<(u32, u32, u32)>,
}

impl FetchRows {
    /// The rows of `cell_ids`, in that order, found in `slices` of the
    /// stored matrix schema (an `indices` and a `values` list column with
    /// the same offsets), one row a cell.
    pub fn new(cell_ids: Vec<u64>, slices: impl IntoIterator<Item = RecordBatch>) -> Self {
        let mut items = Vec::new();
        let mut entries = Vec::with_capacity(cell_ids.len());
        for slice in slices {
            let indices = slice.column(0).as_list::<i32>();
            let values = slice.column(1).as_list::<i32>();
            let number = items.len() as u32;
            for window in indices.value_offsets().windows(2) {
                entries.push((number, window[0] as u32, (window[1] - window[0]) as u32));
            }
            items.push((indices.values().clone(), values.values().clone()));
        }
        debug_assert_eq!(entries.len(), cell_ids.len(), "one row a cell");
        Self {
            cell_ids,
            items,
            entries,
        }
    }
}
