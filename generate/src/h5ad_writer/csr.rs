//! `X` as anndata writes a scipy CSR matrix: group `X` (`csr_matrix`, with
//! its shape) holding `data`, `indices` and `indptr`, each resizable
//! (`maxshape=(None,)`, which anndata asks for so matrices can be appended
//! to) and so chunked the way h5py guesses, uncompressed. Rows are appended
//! as they come; h5py would have written the same bytes in one go.

use rust_hdf5::{H5Dataset, H5Group, H5Type, Result};

use super::encoding::{csr_needs_int64, h5py_chunk, mark_group};
use crate::chunk::Csr;

/// The matrix's size, known before its rows are made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CsrShape {
    pub cells: u64,
    pub genes: u64,
    pub nnz: u64,
}

pub(super) struct CsrWriter {
    data: H5Dataset,
    indices: H5Dataset,
    indptr: H5Dataset,
    int64: bool,
    /// Non-zeros written so far: where the next row starts.
    written: u64,
}

impl CsrWriter {
    pub(super) fn create(parent: &H5Group, shape: CsrShape) -> Result<Self> {
        let group = parent.create_group("X")?;
        mark_group(&group, "csr_matrix", "0.1.0")?;
        group.set_attr_array_numeric("shape", &[shape.cells as i64, shape.genes as i64])?;
        let int64 = csr_needs_int64(shape.cells, shape.genes, shape.nnz);
        let (indices, indptr) = if int64 {
            (
                resizable::<i64>(&group, "indices", shape.nnz)?,
                resizable::<i64>(&group, "indptr", shape.cells + 1)?,
            )
        } else {
            (
                resizable::<i32>(&group, "indices", shape.nnz)?,
                resizable::<i32>(&group, "indptr", shape.cells + 1)?,
            )
        };
        let writer = Self {
            data: resizable::<f32>(&group, "data", shape.nnz)?,
            indices,
            indptr,
            int64,
            written: 0,
        };
        writer.append_index(&writer.indptr, [0].into_iter())?;
        Ok(writer)
    }

    /// Appends the rows of `csr`, whose `indptr` starts at 0.
    pub(super) fn append(&mut self, csr: &Csr) -> Result<()> {
        let data: Vec<f32> = csr.values.iter().map(|&v| v as f32).collect();
        self.data.append(&data)?;
        self.append_index(&self.indices, csr.indices.iter().map(|&g| u64::from(g)))?;
        let ends = csr.indptr[1..].iter().map(|&end| self.written + end);
        self.append_index(&self.indptr, ends)?;
        self.written += csr.indices.len() as u64;
        Ok(())
    }

    /// Appends to `indices` or `indptr` in the matrix's index type; the
    /// values fit it, as the type was chosen from the matrix's size.
    fn append_index(&self, dataset: &H5Dataset, values: impl Iterator<Item = u64>) -> Result<()> {
        if self.int64 {
            let wide: Vec<i64> = values.map(|v| v as i64).collect();
            dataset.append(&wide)
        } else {
            let narrow: Vec<i32> = values.map(|v| v as i32).collect();
            dataset.append(&narrow)
        }
    }
}

/// An empty resizable 1-D dataset chunked as h5py would chunk `len` elements.
fn resizable<T: H5Type>(group: &H5Group, name: &str, len: u64) -> Result<H5Dataset> {
    group
        .new_dataset::<T>()
        .shape([0])
        .max_shape(&[None])
        .chunk(&[h5py_chunk(len, T::element_size())])
        .create(name)
}
