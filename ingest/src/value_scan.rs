//! The pre-pass: the narrowest value type that holds every stored value
//! exactly, decided before a single row is written.

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
    let mut scan = ValueTypeScan::default();
    for range in windows(total, step) {
        read(range)?.iter().for_each(|&value| scan.add(value));
        // Nothing is wider than float64: the rest of the file cannot change the answer.
        if scan.is_widest() {
            break;
        }
    }
    Ok(scan.finish())
}
