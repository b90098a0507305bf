//! The small print of how anndata (through h5py) lays an element out:
//! encoding attributes, h5py's chunk-size guess, and pandas' and scipy's
//! choices of integer width.

use rust_hdf5::format::messages::datatype::EnumMember;
use rust_hdf5::types::VarLenUnicode;
use rust_hdf5::{DatatypeMessage, H5Dataset, H5Group, Result};

/// Marks a group as anndata element `kind` at `version`.
pub(super) fn mark_group(group: &H5Group, kind: &str, version: &str) -> Result<()> {
    group.set_attr_string("encoding-type", kind)?;
    group.set_attr_string("encoding-version", version)
}

/// Marks a dataset as anndata element `kind` at `version`.
pub(super) fn mark_dataset(dataset: &H5Dataset, kind: &str, version: &str) -> Result<()> {
    string_attr(dataset, "encoding-type", kind)?;
    string_attr(dataset, "encoding-version", version)
}

/// A scalar variable-length UTF-8 string, as h5py stores a Python `str`.
fn string_attr(dataset: &H5Dataset, name: &str, value: &str) -> Result<()> {
    let attr = dataset.new_attr::<VarLenUnicode>().shape(()).create(name)?;
    attr.write_string(value)
}

/// A numpy bool as h5py stores it: an enum FALSE=0/TRUE=1 over int8.
pub(super) fn bool_attr(group: &H5Group, name: &str, value: bool) -> Result<()> {
    let member = |name: &str, value: u8| EnumMember {
        name: name.to_owned(),
        value: vec![value],
    };
    let datatype = DatatypeMessage::Enum {
        base: Box::new(DatatypeMessage::i8_type()),
        members: vec![member("FALSE", 0), member("TRUE", 1)],
    };
    group.set_attr_typed(name, datatype, vec![u8::from(value)])
}

/// h5py's `guess_chunk` for a 1-D dataset of `len` elements of `item_size`
/// bytes: the chunk anndata's resizable sparse arrays get.
pub(super) fn h5py_chunk(len: u64, item_size: usize) -> usize {
    const CHUNK_BASE: f64 = 16.0 * 1024.0;
    const CHUNK_MIN: f64 = 8.0 * 1024.0;
    const CHUNK_MAX: f64 = 1024.0 * 1024.0;
    let item_size = item_size as f64;
    // h5py guesses 1024 for a dimension of length 0.
    let mut chunk = if len == 0 { 1024.0 } else { len as f64 };
    let dataset_size = chunk * item_size;
    let target = CHUNK_BASE * 2f64.powf((dataset_size / (1024.0 * 1024.0)).log10());
    let target = if target > CHUNK_MAX {
        CHUNK_MAX
    } else {
        target.max(CHUNK_MIN)
    };
    loop {
        let bytes = chunk * item_size;
        let close_enough = bytes < target || (bytes - target).abs() / target < 0.5;
        if (close_enough && bytes < CHUNK_MAX) || chunk == 1.0 {
            return chunk as usize;
        }
        chunk = (chunk / 2.0).ceil();
    }
}

/// Width of pandas' category codes: the narrowest signed integer strictly
/// above the category count (`pandas.core.dtypes.cast.coerce_indexer_dtype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeWidth {
    I8,
    I16,
    I32,
}

impl CodeWidth {
    pub(super) fn for_categories(count: usize) -> Self {
        if count < i8::MAX as usize {
            Self::I8
        } else if count < i16::MAX as usize {
            Self::I16
        } else {
            Self::I32
        }
    }
}

/// scipy stores a CSR matrix's indices and indptr in one integer type:
/// int32 unless the shape or the number of non-zeros needs int64.
pub(super) fn csr_needs_int64(cells: u64, genes: u64, nnz: u64) -> bool {
    cells.max(genes).max(nnz) > i32::MAX as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_match_h5py() {
        // Computed with h5py 3.16: guess_chunk((n,), (None,), item_size).
        let cases = [
            (0, 4, 1024),
            (1, 4, 1),
            (500, 4, 500),
            (101, 4, 101),
            (100_000, 4, 3125),
            (1_500_000, 4, 5860),
            (3_000_000, 4, 11_719),
            (10_000_000, 8, 9766),
            (100_000_001, 8, 12_208),
            (1_500_000_000, 4, 45_777),
            (150_000_000_000, 4, 143_052),
            (150_000_000_000, 8, 71_526),
        ];
        for (len, item_size, chunk) in cases {
            assert_eq!(
                h5py_chunk(len, item_size),
                chunk,
                "{len} × {item_size} bytes"
            );
        }
    }

    #[test]
    fn code_widths_follow_pandas() {
        assert_eq!(CodeWidth::for_categories(3), CodeWidth::I8);
        assert_eq!(CodeWidth::for_categories(126), CodeWidth::I8);
        assert_eq!(CodeWidth::for_categories(127), CodeWidth::I16);
        assert_eq!(CodeWidth::for_categories(5320), CodeWidth::I16);
        assert_eq!(CodeWidth::for_categories(40_000), CodeWidth::I32);
    }

    #[test]
    fn csr_index_type_follows_scipy() {
        assert!(!csr_needs_int64(100_000_000, 62_710, i32::MAX as u64));
        assert!(csr_needs_int64(100_000_000, 62_710, i32::MAX as u64 + 1));
        assert!(csr_needs_int64(1, 1 << 31, 1));
    }
}
