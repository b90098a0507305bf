//! Turning what the file stores into the rows the store wants: each cell's
//! entries sorted by gene (files may store them in any order), every gene
//! index in range and stored once.

use std::path::PathBuf;

use cellflight_store::CsrRows;

use crate::IngestError;

/// Names the matrix in error messages and bounds its gene indices.
#[derive(Debug, Clone)]
pub(crate) struct MatrixOrigin {
    pub file: PathBuf,
    pub object: String,
    pub n_genes: u64,
}

/// Consecutive cells, ready for the store.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct RowChunk {
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

impl RowChunk {
    pub(crate) fn as_csr(&self) -> CsrRows<'_> {
        CsrRows {
            indptr: &self.indptr,
            indices: &self.indices,
            values: &self.values,
        }
    }

    /// Rows from sparse storage: `pointers` are the file's row pointers for
    /// these cells, `indices`/`values` the entries they point into, starting
    /// at `pointers[0]`.
    pub(crate) fn from_sparse(
        origin: &MatrixOrigin,
        first_cell: u64,
        pointers: &[u64],
        mut indices: Vec<u32>,
        mut values: Vec<f64>,
    ) -> Result<Self, IngestError> {
        let base = pointers.first().copied().unwrap_or(0);
        let indptr: Vec<u64> = pointers.iter().map(|p| p - base).collect();
        for (cell, bounds) in (first_cell..).zip(indptr.windows(2)) {
            let range = bounds[0] as usize..bounds[1] as usize;
            sort_row(
                origin,
                cell,
                &mut indices[range.clone()],
                &mut values[range],
            )?;
        }
        Ok(Self {
            indptr,
            indices,
            values,
        })
    }

    /// Rows from a dense row-major block of `n_genes` columns, zeros dropped.
    pub(crate) fn from_dense(dense: &[f64], n_genes: u64) -> Self {
        let mut chunk = Self {
            indptr: vec![0],
            ..Self::default()
        };
        for row in dense.chunks(n_genes as usize) {
            for (gene, &value) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                chunk.indices.push(gene as u32);
                chunk.values.push(value);
            }
            chunk.indptr.push(chunk.indices.len() as u64);
        }
        chunk
    }
}

/// Sorts one cell's entries by gene and checks them.
fn sort_row(
    origin: &MatrixOrigin,
    cell: u64,
    indices: &mut [u32],
    values: &mut [f64],
) -> Result<(), IngestError> {
    if let Some(&gene) = indices.iter().find(|&&g| u64::from(g) >= origin.n_genes) {
        return Err(IngestError::IndexOutOfRange {
            file: origin.file.clone(),
            object: format!("{}/indices", origin.object),
            cell,
            gene: u64::from(gene),
            n_genes: origin.n_genes,
        });
    }
    if !indices.windows(2).all(|w| w[0] < w[1]) {
        let mut pairs: Vec<(u32, f64)> = indices
            .iter()
            .copied()
            .zip(values.iter().copied())
            .collect();
        pairs.sort_unstable_by_key(|&(gene, _)| gene);
        if let Some(w) = pairs.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(IngestError::DuplicateEntry {
                file: origin.file.clone(),
                object: format!("{}/indices", origin.object),
                cell,
                gene: w[0].0,
            });
        }
        for (slot, (gene, value)) in pairs.into_iter().enumerate() {
            indices[slot] = gene;
            values[slot] = value;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> MatrixOrigin {
        MatrixOrigin {
            file: "in.h5ad".into(),
            object: "X".into(),
            n_genes: 10,
        }
    }

    #[test]
    fn rows_stored_out_of_order_come_out_sorted_with_their_values() {
        let chunk = RowChunk::from_sparse(
            &origin(),
            0,
            &[4, 7, 9],
            vec![9, 2, 5, 1, 3],
            vec![9.0, 2.0, 5.0, 1.0, 3.0],
        )
        .unwrap();
        assert_eq!(chunk.indptr, [0, 3, 5]);
        assert_eq!(chunk.indices, [2, 5, 9, 1, 3]);
        assert_eq!(chunk.values, [2.0, 5.0, 9.0, 1.0, 3.0]);
    }

    #[test]
    fn an_index_out_of_range_names_the_file_object_cell_and_gene() {
        let err = RowChunk::from_sparse(&origin(), 7, &[0, 1], vec![10], vec![1.0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "in.h5ad: X/indices: cell 7 has gene index 10, but the matrix has 10 genes"
        );
    }

    #[test]
    fn a_gene_stored_twice_in_a_cell_is_refused() {
        let err =
            RowChunk::from_sparse(&origin(), 0, &[0, 3], vec![4, 1, 4], vec![1.0; 3]).unwrap_err();
        assert!(
            err.to_string().contains("cell 0 stores gene 4 twice"),
            "{err}"
        );
    }

    #[test]
    fn dense_rows_keep_only_their_non_zeros() {
        let chunk = RowChunk::from_dense(&[0.0, -1.5, 0.0, 2.0, 0.0, 0.0], 3);
        assert_eq!(chunk.indptr, [0, 1, 2]);
        assert_eq!(chunk.indices, [1, 0]);
        assert_eq!(chunk.values, [-1.5, 2.0]);
    }
}
