//! CSC matrices hold columns (genes), the dataset wants rows (cells): a
//! transpose through spill files, each holding the entries of one range of
//! rows, small enough to be loaded and sorted within the memory budget.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use cellflight_h5ad::MatrixSource;

use crate::pipeline::{chunks_within, windows, CellSink};
use crate::rows::{MatrixOrigin, RowChunk};
use crate::{IngestError, MemoryBudget};

/// A spilled entry: row within its bucket (u32), column (u32), value (f64).
const ENTRY_BYTES: usize = 16;

pub(crate) fn stream_transposed(
    source: &MatrixSource,
    origin: &MatrixOrigin,
    budget: MemoryBudget,
    sink: &mut CellSink<'_>,
) -> Result<(), IngestError> {
    let (n_cells, _) = source.shape();
    let spill_bytes = source.nnz() * ENTRY_BYTES as u64;
    let n_buckets = spill_bytes.div_ceil(budget.bucket_bytes()).max(1);
    let rows_per_bucket = n_cells.div_ceil(n_buckets).clamp(1, u64::from(u32::MAX));
    let dir = sink.scratch_dir();
    std::fs::create_dir_all(&dir).map_err(spill_error(&dir))?;
    let buckets = spill(source, origin, budget, &dir, rows_per_bucket)?;
    for (bucket, path) in buckets.iter().enumerate() {
        let first_cell = bucket as u64 * rows_per_bucket;
        let rows = rows_per_bucket.min(n_cells - first_cell);
        let chunk = load_bucket(path, origin, first_cell, rows)?;
        sink.append(&chunk)?;
        std::fs::remove_file(path).map_err(spill_error(path))?;
    }
    std::fs::remove_dir(&dir).map_err(spill_error(&dir))
}

/// Reads the columns in order, appending each entry to its row's bucket, so
/// within a bucket every row's entries arrive sorted by column.
fn spill(
    source: &MatrixSource,
    origin: &MatrixOrigin,
    budget: MemoryBudget,
    dir: &Path,
    rows_per_bucket: u64,
) -> Result<Vec<PathBuf>, IngestError> {
    let (n_cells, n_genes) = source.shape();
    let n_buckets = n_cells.div_ceil(rows_per_bucket);
    let paths: Vec<PathBuf> = (0..n_buckets)
        .map(|b| dir.join(format!("rows-{b:06}.bin")))
        .collect();
    let mut files = paths
        .iter()
        .map(|p| {
            File::create(p)
                .map(|f| BufWriter::with_capacity(64 << 10, f))
                .map_err(spill_error(p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for window in windows(n_genes, budget.rows_per_window()) {
        let pointers = source.pointers(window.clone())?;
        for columns in chunks_within(&pointers, budget.entries_per_chunk()) {
            let pointers = &pointers[columns.start..=columns.end];
            let (rows, values) = source.entries(pointers[0]..pointers[pointers.len() - 1])?;
            let base = pointers[0];
            for (offset, bounds) in pointers.windows(2).enumerate() {
                let gene = window.start + (columns.start + offset) as u64;
                for entry in (bounds[0] - base) as usize..(bounds[1] - base) as usize {
                    let row = u64::from(rows[entry]);
                    check_row(origin, row, gene, n_cells)?;
                    let bucket = (row / rows_per_bucket) as usize;
                    let mut record = [0u8; ENTRY_BYTES];
                    record[..4].copy_from_slice(&((row % rows_per_bucket) as u32).to_le_bytes());
                    record[4..8].copy_from_slice(&(gene as u32).to_le_bytes());
                    record[8..].copy_from_slice(&values[entry].to_le_bytes());
                    files[bucket]
                        .write_all(&record)
                        .map_err(spill_error(&paths[bucket]))?;
                }
            }
        }
    }
    for (file, path) in files.into_iter().zip(&paths) {
        file.into_inner()
            .map_err(|e| spill_error(path)(e.into_error()))?;
    }
    Ok(paths)
}

fn check_row(origin: &MatrixOrigin, row: u64, gene: u64, n_cells: u64) -> Result<(), IngestError> {
    if row < n_cells {
        return Ok(());
    }
    Err(IngestError::CellIndexOutOfRange {
        file: origin.file.clone(),
        object: format!("{}/indices", origin.object),
        gene,
        cell: row,
        n_cells,
    })
}

/// The rows of one bucket, by a counting sort on the row (stable, so each
/// row keeps its column order).
fn load_bucket(
    path: &Path,
    origin: &MatrixOrigin,
    first_cell: u64,
    rows: u64,
) -> Result<RowChunk, IngestError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(spill_error(path))?;
    let records: Vec<(u32, u32, f64)> = bytes
        .as_chunks::<ENTRY_BYTES>()
        .0
        .iter()
        .map(decode)
        .collect();
    drop(bytes);
    let mut indptr = vec![0u64; rows as usize + 1];
    for &(row, _, _) in &records {
        indptr[row as usize + 1] += 1;
    }
    for row in 0..rows as usize {
        indptr[row + 1] += indptr[row];
    }
    let mut next = indptr.clone();
    let mut indices = vec![0u32; records.len()];
    let mut values = vec![0f64; records.len()];
    for (row, gene, value) in records {
        let slot = &mut next[row as usize];
        indices[*slot as usize] = gene;
        values[*slot as usize] = value;
        *slot += 1;
    }
    RowChunk::from_sparse(origin, first_cell, &indptr, indices, values)
}

/// A spilled entry: row and gene as little-endian `u32`, the value as `f64`.
fn decode(record: &[u8; ENTRY_BYTES]) -> (u32, u32, f64) {
    let [r0, r1, r2, r3, g0, g1, g2, g3, value @ ..] = *record;
    let row = u32::from_le_bytes([r0, r1, r2, r3]);
    let gene = u32::from_le_bytes([g0, g1, g2, g3]);
    (row, gene, f64::from_le_bytes(value))
}

fn spill_error(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError + '_ {
    move |source| IngestError::Spill {
        path: path.to_owned(),
        source,
    }
}
