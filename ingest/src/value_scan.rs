//! The pre-pass: the narrowest value type that holds every stored value
//! exactly, decided before a single row is written, the two halves of the
//! file scanned at once.

use std::ops::Range;

use cellflight_h5ad::{MatrixEncoding, MatrixSource};
use cellflight_schemas::{ValueType, ValueTypeScan};

use crate::pipeline::windows;
use crate::{IngestError, MemoryBudget};

pub(crate) fn narrowest_value_type(
    source: &MatrixSource,
    budget: MemoryBudget,
) -> Result<ValueType, IngestError> {
    let (n_cells, n_genes) = source.shape();
    let (total, step) = match source.encoding() {
        MatrixEncoding::Dense => (
            n_cells,
            (budget.entries_per_chunk() / n_genes.max(1)).max(1),
        ),
        MatrixEncoding::Csr | MatrixEncoding::Csc => (source.nnz(), budget.entries_per_chunk()),
    };
    let read = |range: Range<u64>| match source.encoding() {
        MatrixEncoding::Dense => source.dense_rows(range),
        MatrixEncoding::Csr | MatrixEncoding::Csc => source.values(range),
    };
    let scan_range = |range: Range<u64>| -> Result<ValueTypeScan, IngestError> {
        let mut scan = ValueTypeScan::default();
        for window in windows(range.end - range.start, step) {
            read(range.start + window.start..range.start + window.end)?
                .iter()
                .for_each(|&value| scan.add(value));
            // Nothing is wider than float64: the rest of the file cannot change the answer.
            if scan.is_widest() {
                break;
            }
        }
        Ok(scan)
    };
    // Both cores: the second half of the file is scanned on a second thread.
    let middle = total / 2;
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| scan_range(middle..total));
        let first = scan_range(0..middle);
        let second = second
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    });
    Ok(first?.merge(second?).finish())
}
