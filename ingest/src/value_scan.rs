//! The pre-pass: the narrowest value type that holds every stored value
//! exactly, decided before a single row is written.

use cellflight_h5ad::{MatrixEncoding, MatrixSource};
use cellflight_schemas::ValueType;

use crate::{IngestError, MemoryBudget};

pub(crate) fn narrowest_value_type(
    source: &MatrixSource,
    budget: MemoryBudget,
) -> Result<ValueType, IngestError> {
    let mut narrowest = ValueType::UInt8;
    let mut widen_by = |values: &[f64]| {
        for &value in values {
            // Once f64 is needed nothing wider exists; stop looking.
            if narrowest == ValueType::Float64 {
                return;
            }
            narrowest = narrowest.widen(ValueType::narrowest_for(value));
        }
    };
    match source.encoding() {
        MatrixEncoding::Dense => {
            let (n_cells, n_genes) = source.shape();
            let rows = (budget.entries_per_chunk() / n_genes.max(1)).max(1);
            for start in (0..n_cells).step_by(rows as usize) {
                widen_by(&source.dense_rows(start..(start + rows).min(n_cells))?);
            }
        }
        MatrixEncoding::Csr | MatrixEncoding::Csc => {
            let nnz = source.nnz();
            let step = budget.entries_per_chunk();
            for start in (0..nnz).step_by(step as usize) {
                widen_by(&source.values(start..(start + step).min(nnz))?);
            }
        }
    }
    Ok(narrowest)
}
