//! Damaged inputs: every error names the file, the object inside it and the
//! problem. The fixtures are valid files edited with h5py by make_fixtures.py.

use crate::common;

use cellflight_h5ad::{H5ad, H5adError, MatrixSelection};
use common::*;

/// The error's message, checked to start with the fixture's path.
fn message(name: &str, error: H5adError) -> String {
    let message = error.to_string();
    let path = fixture(name).display().to_string();
    assert!(message.starts_with(&format!("{path}: ")), "{message}");
    message[path.len() + 2..].to_string()
}

fn open_error(name: &str) -> H5adError {
    H5ad::open(&fixture(name)).expect_err("open fails")
}

fn x_error(name: &str) -> String {
    let error = open_fixture(name)
        .matrix(&MatrixSelection::X)
        .expect_err("matrix() fails");
    message(name, error)
}

#[test]
fn a_text_file_is_not_hdf5() {
    let error = open_error("not_hdf5.h5ad");
    assert!(matches!(error, H5adError::NotHdf5 { .. }), "{error}");
    assert_eq!(
        message("not_hdf5.h5ad", error),
        "not an HDF5 file: no HDF5 signature"
    );
}

#[test]
fn a_missing_file_cannot_be_opened() {
    let error = open_error("no_such_file.h5ad");
    assert!(matches!(error, H5adError::Open { .. }), "{error}");
    assert!(message("no_such_file.h5ad", error).starts_with("cannot open: "));
}

#[test]
fn hdf5_without_anndata_parts_is_not_anndata() {
    let error = open_error("not_anndata.h5ad");
    assert!(matches!(error, H5adError::NotAnnData { .. }), "{error}");
    assert_eq!(
        message("not_anndata.h5ad", error),
        "not an AnnData file: no root encoding-type attribute and no X, obs, var"
    );
}

#[test]
fn a_file_without_x_says_x_is_missing() {
    assert_eq!(x_error("no_x.h5ad"), "X: missing matrix");
}

#[test]
fn a_ragged_indptr_is_caught_when_its_range_is_read() {
    let x = open_fixture("ragged_indptr.h5ad")
        .matrix(&MatrixSelection::X)
        .unwrap();
    assert_eq!(x.pointers(0..1).unwrap(), vec![0, 2]);
    let error = x.pointers(0..4).unwrap_err();
    assert!(matches!(error, H5adError::Invalid { .. }));
    assert_eq!(
        message("ragged_indptr.h5ad", error),
        "X/indptr: invalid: not monotone: indptr[1] = 2 > indptr[2] = 1"
    );
}

#[test]
fn indptr_must_start_at_zero() {
    assert_eq!(
        x_error("indptr_not_zero.h5ad"),
        "X/indptr: invalid: indptr[0] = 1, expected 0"
    );
}

#[test]
fn data_and_indices_must_have_the_same_length() {
    assert_eq!(
        x_error("length_mismatch.h5ad"),
        "X: invalid: data has 7 entries but indices has 8"
    );
}

#[test]
fn a_sparse_matrix_needs_its_shape() {
    assert_eq!(x_error("no_shape.h5ad"), "X: missing attribute 'shape'");
}

#[test]
fn an_unknown_encoding_is_named() {
    assert_eq!(
        x_error("unknown_encoding.h5ad"),
        "X: unsupported: encoding-type 'awkward-array'"
    );
}

#[test]
fn a_column_shorter_than_its_index_is_refused() {
    let error = open_fixture("column_length_mismatch.h5ad")
        .var(&MatrixSelection::X)
        .err()
        .unwrap();
    assert_eq!(
        message("column_length_mismatch.h5ad", error),
        "var/symbol: invalid: has 4 rows but the index has 5"
    );
}

#[test]
fn an_unknown_column_encoding_is_named() {
    let error = open_fixture("unknown_column_encoding.h5ad")
        .var(&MatrixSelection::X)
        .err()
        .unwrap();
    assert_eq!(
        message("unknown_column_encoding.h5ad", error),
        "var/symbol: unsupported: column encoding-type 'awkward-array'"
    );
}

#[test]
fn a_dataframe_range_past_the_end_is_refused() {
    let error = open_fixture("csc.h5ad")
        .obs()
        .unwrap()
        .read(2..9)
        .unwrap_err();
    assert_eq!(
        message("csc.h5ad", error),
        "obs: bad request: range 2..9 is outside 0..4"
    );
}
