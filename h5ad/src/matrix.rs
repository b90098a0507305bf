//! The expression matrix: CSR, CSC or dense, read in ranges. Opening checks
//! what is cheap to check (shape, lengths, first and last pointer); every
//! pointer range read checks its own pointers, so a ragged indptr is caught
//! without reading it whole.

use std::fmt;
use std::ops::Range;

use rust_hdf5::H5File;

use crate::array::{Array, Dtype};
use crate::attrs::Meta;
use crate::error::{H5adError, Loc};

/// Which matrix of the file becomes the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixSelection {
    X,
    Raw,
    Layer(String),
}

impl MatrixSelection {
    /// The matrix's path inside the file: "X", "raw/X" or "layers/NAME".
    pub fn path(&self) -> String {
        match self {
            MatrixSelection::X => "X".to_string(),
            MatrixSelection::Raw => "raw/X".to_string(),
            MatrixSelection::Layer(name) => format!("layers/{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixEncoding {
    Csr,
    Csc,
    Dense,
}

/// An open matrix. Sparse reads are by pointer range and entry range; dense
/// reads are by row range.
pub struct MatrixSource {
    loc: Loc,
    encoding: MatrixEncoding,
    shape: (u64, u64),
    nnz: u64,
    storage: Storage,
}

impl fmt::Debug for MatrixSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatrixSource")
            .field("loc", &self.loc)
            .field("shape", &self.shape)
            .field("nnz", &self.nnz)
            .finish_non_exhaustive()
    }
}

enum Storage {
    Sparse(Box<Sparse>),
    Dense(Array),
}

struct Sparse {
    indptr: Array,
    indices: Array,
    data: Array,
}

impl MatrixSource {
    pub(crate) fn open_sparse(
        file: &H5File,
        meta: &Meta,
        loc: Loc,
        encoding: MatrixEncoding,
    ) -> Result<MatrixSource, H5adError> {
        let shape = sparse_shape(meta, &loc)?;
        let indptr = Array::open_1d(file, loc.child("indptr"))?;
        let indices = Array::open_1d(file, loc.child("indices"))?;
        let data = Array::open_1d(file, loc.child("data"))?;
        check_types(&indptr, &indices, &data)?;
        let nnz = data.len();
        if indices.len() != nnz {
            return Err(loc.invalid(format!(
                "data has {nnz} entries but indices has {}",
                indices.len()
            )));
        }
        let major = if encoding == MatrixEncoding::Csr {
            shape.0
        } else {
            shape.1
        };
        check_pointer_ends(&indptr, major, nnz)?;
        Ok(MatrixSource {
            loc,
            encoding,
            shape,
            nnz,
            storage: Storage::Sparse(Box::new(Sparse {
                indptr,
                indices,
                data,
            })),
        })
    }

    pub(crate) fn open_dense(file: &H5File, loc: Loc) -> Result<MatrixSource, H5adError> {
        let array = Array::open(file, loc.clone())?;
        let &[rows, cols] = array.shape() else {
            return Err(loc.unsupported(format!(
                "dense matrix with {} dimensions, expected 2",
                array.shape().len()
            )));
        };
        if !array.dtype().is_numeric() {
            return Err(loc.unsupported(format!("dense matrix of {}", array.dtype())));
        }
        Ok(MatrixSource {
            loc,
            encoding: MatrixEncoding::Dense,
            shape: (rows, cols),
            nnz: rows.saturating_mul(cols),
            storage: Storage::Dense(array),
        })
    }

    /// (n_cells, n_genes) as AnnData sees it.
    pub fn shape(&self) -> (u64, u64) {
        self.shape
    }

    pub fn encoding(&self) -> MatrixEncoding {
        self.encoding
    }

    /// Stored entries (sparse), or n_cells * n_genes (dense).
    pub fn nnz(&self) -> u64 {
        self.nnz
    }

    /// Sparse only: indptr[range.start ..= range.end] (CSR: rows; CSC: columns),
    /// checked to be monotone and within nnz.
    pub fn pointers(&self, range: Range<u64>) -> Result<Vec<u64>, H5adError> {
        self.loc.contained(|| self.read_pointers(range))
    }

    fn read_pointers(&self, range: Range<u64>) -> Result<Vec<u64>, H5adError> {
        let indptr = &self.sparse("pointers")?.indptr;
        let major = indptr.len() - 1;
        indptr.loc().check_range(&range, major)?;
        let raw = indptr.i64s(range.start..range.end + 1)?;
        self.check_pointers(indptr.loc(), range.start, &raw)
    }

    /// Sparse only: entries [range) of `indices` (as u32) and `data` (as f64).
    pub fn entries(&self, range: Range<u64>) -> Result<(Vec<u32>, Vec<f64>), H5adError> {
        self.loc.contained(|| self.read_entries(range))
    }

    fn read_entries(&self, range: Range<u64>) -> Result<(Vec<u32>, Vec<f64>), H5adError> {
        let sparse = self.sparse("entries")?;
        let raw = sparse.indices.i64s(range.clone())?;
        let indices = narrow_indices(sparse.indices.loc(), range.start, raw)?;
        Ok((indices, sparse.data.f64s(range)?))
    }

    /// Sparse only: entries [range) of `data`, without the indices.
    pub fn values(&self, range: Range<u64>) -> Result<Vec<f64>, H5adError> {
        self.loc
            .contained(|| self.sparse("values")?.data.f64s(range))
    }

    /// Dense only: rows [range), row-major.
    pub fn dense_rows(&self, range: Range<u64>) -> Result<Vec<f64>, H5adError> {
        self.loc.contained(|| match &self.storage {
            Storage::Dense(array) => array.f64s(range),
            Storage::Sparse { .. } => Err(self
                .loc
                .request("dense_rows() on a sparse matrix; use pointers() and entries()")),
        })
    }

    fn sparse(&self, call: &str) -> Result<&Sparse, H5adError> {
        match &self.storage {
            Storage::Sparse(sparse) => Ok(sparse),
            Storage::Dense(_) => Err(self
                .loc
                .request(format!("{call}() on a dense matrix; use dense_rows()"))),
        }
    }

    /// Pointers must not decrease and must stay within 0..=nnz.
    fn check_pointers(&self, loc: &Loc, first: u64, raw: &[i64]) -> Result<Vec<u64>, H5adError> {
        let mut out = Vec::with_capacity(raw.len());
        for (i, &value) in raw.iter().enumerate() {
            let at = first + i as u64;
            let pointer = u64::try_from(value)
                .map_err(|_| loc.invalid(format!("indptr[{at}] = {value} is negative")))?;
            if pointer > self.nnz {
                return Err(loc.invalid(format!(
                    "indptr[{at}] = {pointer} is past the {} stored entries",
                    self.nnz
                )));
            }
            if let Some(&previous) = out.last() {
                if pointer < previous {
                    return Err(loc.invalid(format!(
                        "not monotone: indptr[{}] = {previous} > indptr[{at}] = {pointer}",
                        at - 1
                    )));
                }
            }
            out.push(pointer);
        }
        Ok(out)
    }
}

/// The `shape` attribute (anndata ≥ 0.7), or `h5sparse_shape` (0.6).
fn sparse_shape(meta: &Meta, loc: &Loc) -> Result<(u64, u64), H5adError> {
    let attrs = meta.attrs(loc)?;
    let values = match attrs.ints("shape")? {
        Some(values) => values,
        None => attrs
            .ints("h5sparse_shape")?
            .ok_or_else(|| loc.missing("attribute 'shape'"))?,
    };
    match values.as_slice() {
        &[rows, cols] if rows >= 0 && cols >= 0 => Ok((rows as u64, cols as u64)),
        other => Err(loc.invalid(format!(
            "attribute 'shape' is {other:?}, expected two non-negative integers"
        ))),
    }
}

fn check_types(indptr: &Array, indices: &Array, data: &Array) -> Result<(), H5adError> {
    for array in [indptr, indices] {
        if !matches!(array.dtype(), Dtype::Int { .. }) {
            return Err(array.loc().unsupported(format!(
                "holds {} where integers are expected",
                array.dtype()
            )));
        }
    }
    if !data.dtype().is_numeric() {
        return Err(data
            .loc()
            .unsupported(format!("holds {} where numbers are expected", data.dtype())));
    }
    Ok(())
}

/// indptr has one entry per major row plus one, starts at 0 and ends at nnz.
fn check_pointer_ends(indptr: &Array, major: u64, nnz: u64) -> Result<(), H5adError> {
    let loc = indptr.loc();
    if indptr.len() != major + 1 {
        return Err(loc.invalid(format!(
            "has {} entries, expected {} (one per row/column of the shape, plus one)",
            indptr.len(),
            major + 1
        )));
    }
    let first = pointer_at(indptr, 0)?;
    if first != 0 {
        return Err(loc.invalid(format!("indptr[0] = {first}, expected 0")));
    }
    let last = pointer_at(indptr, major)?;
    if u64::try_from(last) != Ok(nnz) {
        return Err(loc.invalid(format!(
            "indptr[{major}] = {last}, expected the number of stored entries, {nnz}"
        )));
    }
    Ok(())
}

fn pointer_at(indptr: &Array, at: u64) -> Result<i64, H5adError> {
    let values = indptr.i64s(at..at + 1)?;
    values
        .first()
        .copied()
        .ok_or_else(|| indptr.loc().read(format!("no value at {at}")))
}

/// Indices as u32; bounds against the shape are the pipeline's to check.
fn narrow_indices(loc: &Loc, first: u64, raw: Vec<i64>) -> Result<Vec<u32>, H5adError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, value)| {
            u32::try_from(value).map_err(|_| {
                loc.invalid(format!(
                    "indices[{}] = {value} is not a valid column/row index",
                    first + i as u64
                ))
            })
        })
        .collect()
}
