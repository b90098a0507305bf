//! The part of an append that needs nothing of the writer's state: rows
//! checked against the dataset's gene count and value type, zeros dropped,
//! each cell's statistics taken. An ingest runs it on the thread that reads
//! the file, so the writing thread only stores.

use cellflight_schemas::ValueType;

use crate::writer::{check_same_len, CsrRows};
use crate::StoreError;

/// What rows must hold to be appended to one dataset (from
/// [`crate::DatasetWriter::row_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowCheck {
    pub(crate) n_genes: u64,
    pub(crate) value_type: Option<ValueType>,
}

/// Consecutive cells a [`RowCheck`] passed, from `first_cell` on: their
/// non-zero entries, and each cell's non-zero count and total.
#[derive(Debug)]
pub struct CheckedRows {
    pub(crate) check: RowCheck,
    pub(crate) first_cell: u64,
    pub(crate) indptr: Vec<usize>,
    pub(crate) indices: Vec<u32>,
    pub(crate) values: Vec<f64>,
    pub(crate) n_genes: Vec<u32>,
    pub(crate) totals: Vec<f64>,
}

impl CheckedRows {
    pub fn cells(&self) -> usize {
        self.n_genes.len()
    }
}

impl RowCheck {
    /// Checks `csr`, whose first row is cell `first_cell` of the dataset
    /// (errors name cells by that number): gene indices in range and
    /// strictly increasing within a cell, every value held exactly by the
    /// dataset's value type.
    pub fn check(&self, csr: CsrRows<'_>, first_cell: u64) -> Result<CheckedRows, StoreError> {
        check_indptr(&csr)?;
        let cells = csr.indptr.len() - 1;
        let mut rows = CheckedRows {
            check: *self,
            first_cell,
            indptr: Vec::with_capacity(cells + 1),
            indices: Vec::with_capacity(csr.indices.len()),
            values: Vec::with_capacity(csr.values.len()),
            n_genes: Vec::with_capacity(cells),
            totals: Vec::with_capacity(cells),
        };
        rows.indptr.push(0);
        for (cell, bounds) in (first_cell..).zip(csr.indptr.windows(2)) {
            let range = bounds[0] as usize..bounds[1] as usize;
            self.keep_nonzeros(
                cell,
                &csr.indices[range.clone()],
                &csr.values[range],
                &mut rows,
            )?;
            let start = rows.indptr[rows.indptr.len() - 1];
            let kept = &rows.values[start..];
            rows.n_genes.push(kept.len() as u32);
            rows.totals.push(kept.iter().sum());
            rows.indptr.push(rows.values.len());
        }
        Ok(rows)
    }

    fn keep_nonzeros(
        &self,
        cell: u64,
        indices: &[u32],
        values: &[f64],
        out: &mut CheckedRows,
    ) -> Result<(), StoreError> {
        let mut previous: Option<u32> = None;
        for (&gene, &value) in indices.iter().zip(values) {
            if u64::from(gene) >= self.n_genes {
                return Err(StoreError::InvalidInput(format!(
                    "cell {cell} has gene index {gene}, out of range for {} genes",
                    self.n_genes
                )));
            }
            if previous.is_some_and(|p| p >= gene) {
                return Err(StoreError::InvalidInput(format!(
                    "gene indices of cell {cell} are not strictly increasing ({} then {gene})",
                    previous.unwrap_or_default()
                )));
            }
            previous = Some(gene);
            if self.value_type.is_some_and(|t| !t.holds(value)) {
                return Err(StoreError::InvalidInput(format!(
                    "cell {cell} has value {value}, which the dataset's value type {:?} does not hold exactly",
                    self.value_type.unwrap_or(ValueType::Float64)
                )));
            }
            if value != 0.0 {
                out.indices.push(gene);
                out.values.push(value);
            }
        }
        Ok(())
    }
}

fn check_indptr(csr: &CsrRows<'_>) -> Result<(), StoreError> {
    let entries = csr.indices.len() as u64;
    check_same_len("values", csr.values.len(), csr.indices.len())?;
    let first = csr.indptr.first().copied().unwrap_or(0);
    let monotone = csr.indptr.windows(2).all(|w| w[0] <= w[1]);
    let last = csr.indptr.last().copied().unwrap_or(0);
    if csr.indptr.is_empty() || !monotone || last > entries || first > last {
        return Err(StoreError::InvalidInput(format!(
            "row pointers are not monotone within 0..={entries}"
        )));
    }
    Ok(())
}
