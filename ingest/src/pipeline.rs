//! The ingest from start to finish.

use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cellflight_h5ad::{DataFrame, H5ad, MatrixEncoding, MatrixSelection, MatrixSource};
use cellflight_schemas::Manifest;
use cellflight_store::{
    CheckedRows, DatasetDescription, DatasetSpec, DatasetWriter, MatrixSpec, Origin, RowCheck,
    WriteMode, DEFAULT_CELLS_PER_BATCH,
};

use crate::budget::MIN_BUDGET;
use crate::overlap::{overlapped, Producer};
use crate::rows::{MatrixOrigin, RowChunk};
use crate::{csc, value_scan, IngestError, MemoryBudget};

#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub input: PathBuf,
    /// The dataset directory; its file name is the dataset name.
    pub output: PathBuf,
    pub matrix: MatrixSelection,
    /// Replace an existing dataset (atomically) instead of refusing.
    pub replace: bool,
    pub memory: MemoryBudget,
}

#[derive(Debug)]
pub struct IngestSummary {
    pub manifest: Manifest,
    /// Size of the input file, for throughput figures.
    pub input_bytes: u64,
    pub elapsed: Duration,
}

/// Ingests `options.input`; `progress` hears of every chunk of cells
/// written: (cells just written, cells in all).
pub fn ingest(
    options: &IngestOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<IngestSummary, IngestError> {
    let started = Instant::now();
    if options.memory.0 < MIN_BUDGET {
        return Err(IngestError::BudgetTooSmall {
            given: options.memory.0,
            minimum: MIN_BUDGET,
        });
    }
    let file = H5ad::open(&options.input)?;
    let source = file.matrix(&options.matrix)?;
    let (n_cells, n_genes) = source.shape();
    let obs = file.obs()?;
    let var = file.var(&options.matrix)?;
    check_shapes(options, &obs, &var, n_cells, n_genes)?;

    let value_type = value_scan::narrowest_value_type(&source, options.memory)?;
    let spec = DatasetSpec {
        n_genes,
        matrix: Some(MatrixSpec {
            value_type,
            cells_per_batch: DEFAULT_CELLS_PER_BATCH,
        }),
    };
    let mode = if options.replace {
        WriteMode::Replace
    } else {
        WriteMode::CreateNew
    };
    let writer = DatasetWriter::create(&options.output, spec, mode)?;
    let mut sink = CellSink {
        writer,
        obs: &obs,
        next_cell: 0,
        progress,
    };
    let origin = MatrixOrigin {
        file: options.input.clone(),
        object: options.matrix.path(),
        n_genes,
    };
    match source.encoding() {
        MatrixEncoding::Csr => stream_csr(&source, &origin, options.memory, &mut sink)?,
        MatrixEncoding::Dense => stream_dense(&source, options.memory, &mut sink)?,
        MatrixEncoding::Csc => csc::stream_transposed(&source, &origin, options.memory, &mut sink)?,
    }
    let description = DatasetDescription {
        cell_categoricals: obs.categoricals(),
        gene_categoricals: var.categoricals(),
        origin: Origin {
            source: options.input.display().to_string(),
            matrix: options.matrix.path(),
            parameters: None,
        },
        skipped: file.skipped(&options.matrix),
    };
    let genes = var.read(0..n_genes)?;
    let manifest = sink.writer.finish(&genes, description)?;
    Ok(IngestSummary {
        manifest,
        input_bytes: std::fs::metadata(&options.input).map_or(0, |m| m.len()),
        elapsed: started.elapsed(),
    })
}

fn check_shapes(
    options: &IngestOptions,
    obs: &DataFrame,
    var: &DataFrame,
    n_cells: u64,
    n_genes: u64,
) -> Result<(), IngestError> {
    if obs.n_rows() != n_cells {
        return Err(IngestError::ObsMismatch {
            file: options.input.clone(),
            object: "obs".into(),
            found: obs.n_rows(),
            expected: n_cells,
        });
    }
    if var.n_rows() != n_genes {
        let object = match options.matrix {
            MatrixSelection::Raw => "raw/var",
            _ => "var",
        };
        return Err(IngestError::VarMismatch {
            file: options.input.clone(),
            object: object.into(),
            found: var.n_rows(),
            expected: n_genes,
        });
    }
    Ok(())
}

/// Where chunks of rows go: the store, with their obs rows beside them.
pub(crate) struct CellSink<'a> {
    writer: DatasetWriter,
    obs: &'a DataFrame,
    next_cell: u64,
    progress: &'a dyn Fn(u64, u64),
}

impl CellSink<'_> {
    pub(crate) fn append(&mut self, chunk: &RowChunk) -> Result<(), IngestError> {
        let rows = self.row_check().check(chunk.as_csr(), self.next_cell)?;
        self.append_checked(&rows)
    }

    /// What the rows must hold; checking them may run on another thread.
    pub(crate) fn row_check(&self) -> RowCheck {
        self.writer.row_check()
    }

    pub(crate) fn append_checked(&mut self, rows: &CheckedRows) -> Result<(), IngestError> {
        let cells = self.next_cell..self.next_cell + rows.cells() as u64;
        let obs = self.obs.read(cells.clone())?;
        self.writer.append_checked(rows, &obs)?;
        self.next_cell = cells.end;
        (self.progress)(rows.cells() as u64, self.obs.n_rows());
        Ok(())
    }

    /// Scratch space that disappears with the dataset if the ingest fails.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.writer.staging_dir().join("spill")
    }
}

/// Rows in chunks of at most the budget's entries, decoded (read, sorted,
/// checked against the dataset) on a second thread while the sink writes
/// the last chunk.
fn stream_csr(
    source: &MatrixSource,
    origin: &MatrixOrigin,
    budget: MemoryBudget,
    sink: &mut CellSink<'_>,
) -> Result<(), IngestError> {
    let (n_cells, _) = source.shape();
    let check = sink.row_check();
    let decode = |out: &Producer<CheckedRows>| {
        for window in windows(n_cells, budget.rows_per_window()) {
            let pointers = source.pointers(window.clone())?;
            for rows in chunks_within(&pointers, budget.entries_per_chunk()) {
                let pointers = &pointers[rows.start..=rows.end];
                let entries = pointers[0]..pointers[pointers.len() - 1];
                let (indices, values) = source.entries(entries)?;
                let first_cell = window.start + rows.start as u64;
                let chunk = RowChunk::from_sparse(origin, first_cell, pointers, indices, values)?;
                if !out.send(check.check(chunk.as_csr(), first_cell)?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    overlapped(decode, |rows| sink.append_checked(&rows))
}

/// Rows in chunks of the budget's entries, read and checked on a second
/// thread while the sink writes the last chunk.
fn stream_dense(
    source: &MatrixSource,
    budget: MemoryBudget,
    sink: &mut CellSink<'_>,
) -> Result<(), IngestError> {
    let (n_cells, n_genes) = source.shape();
    let rows = (budget.entries_per_chunk() / n_genes.max(1)).max(1);
    let check = sink.row_check();
    let read = |out: &Producer<CheckedRows>| {
        for cells in windows(n_cells, rows) {
            let chunk = RowChunk::from_dense(&source.dense_rows(cells.clone())?, n_genes);
            if !out.send(check.check(chunk.as_csr(), cells.start)?) {
                break;
            }
        }
        Ok(())
    };
    overlapped(read, |rows| sink.append_checked(&rows))
}

/// `0..n` cut into consecutive ranges of at most `step`.
pub(crate) fn windows(n: u64, step: u64) -> impl Iterator<Item = Range<u64>> {
    (0..n)
        .step_by(step as usize)
        .map(move |start| start..(start + step).min(n))
}

/// Cuts the rows behind `pointers` (one more than rows) into consecutive
/// runs holding at most `max_entries` entries, or one row if it alone holds more.
pub(crate) fn chunks_within(pointers: &[u64], max_entries: u64) -> Vec<Range<usize>> {
    let rows = pointers.len().saturating_sub(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < rows {
        let mut end = start + 1;
        while end < rows && pointers[end + 1] - pointers[start] <= max_entries {
            end += 1;
        }
        chunks.push(start..end);
        start = end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_at_most_the_budgeted_entries_or_one_big_row() {
        let pointers = [0, 3, 5, 20, 21, 22];
        assert_eq!(chunks_within(&pointers, 5), [0..2, 2..3, 3..5]);
        assert_eq!(chunks_within(&pointers, 100), vec![0..5usize]);
        assert_eq!(chunks_within(&[0], 5), Vec::<Range<usize>>::new());
    }

    #[test]
    fn windows_cover_everything_once() {
        let all: Vec<_> = windows(10, 4).collect();
        assert_eq!(all, [0..4, 4..8, 8..10]);
        assert_eq!(windows(0, 4).count(), 0);
    }
}
