//! Matrix encodings the real files do not cover, on fixtures written by
//! tests/fixtures/make_fixtures.py. Every fixture's X holds the same 4 x 5
//! counts (cell 2 is empty):
//!
//!     0 1 0 0 2
//!     3 0 0 4 0
//!     0 0 0 0 0
//!     5 6 7 0 8

use crate::common;

use cellflight_h5ad::{H5adError, MatrixEncoding, MatrixSelection, MatrixSource};
use common::*;

/// X of a fixture file.
fn fixture_x(name: &str) -> MatrixSource {
    open_fixture(name).matrix(&MatrixSelection::X).unwrap()
}

#[test]
fn csc_pointers_run_over_columns() {
    let x = fixture_x("csc.h5ad");
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((4, 5), MatrixEncoding::Csc, 8)
    );
    assert_eq!(x.pointers(0..5).unwrap(), vec![0, 2, 4, 5, 6, 8]);
    // Column 0 holds rows 1 and 3; column 4 holds rows 0 and 3.
    assert_eq!(x.entries(0..2).unwrap(), (vec![1, 3], vec![3.0, 5.0]));
    assert_eq!(x.entries(6..8).unwrap(), (vec![0, 3], vec![2.0, 8.0]));
}

#[test]
fn int64_indptr_and_integer_data_read_exactly() {
    let x = fixture_x("int64_indptr.h5ad");
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((4, 5), MatrixEncoding::Csr, 8)
    );
    assert_eq!(x.pointers(0..4).unwrap(), vec![0, 2, 4, 4, 8]);
    assert_eq!(x.pointers(2..3).unwrap(), vec![4, 4]);
    assert_eq!(
        x.entries(4..8).unwrap(),
        (vec![0, 1, 2, 4], vec![5.0, 6.0, 7.0, 8.0])
    );
}

#[test]
fn integers_beyond_2_pow_53_are_refused() {
    let x = fixture_x("huge_counts.h5ad");
    assert_eq!(
        x.values(0..7).unwrap(),
        vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
    let error = x.values(0..8).unwrap_err();
    assert!(matches!(error, H5adError::Unsupported { .. }));
    let message = error.to_string();
    assert!(
        message.contains(
            "huge_counts.h5ad: X/data: unsupported: integer 1152921504606846976 is beyond 2^53"
        ),
        "{message}"
    );
}

#[test]
fn dense_float64_x_keeps_negatives() {
    let x = fixture_x("dense.h5ad");
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((4, 5), MatrixEncoding::Dense, 20)
    );
    assert_eq!(x.dense_rows(3..4).unwrap(), vec![3.5, 4.5, 5.5, -1.5, 6.5]);
    assert_eq!(x.dense_rows(0..4).unwrap().len(), 20);
}

#[test]
fn layers_are_chosen_by_name() {
    let file = open_fixture("dense.h5ad");
    let sparse = file
        .matrix(&MatrixSelection::Layer("counts".into()))
        .unwrap();
    assert_eq!(
        (sparse.shape(), sparse.encoding()),
        ((4, 5), MatrixEncoding::Csr)
    );
    assert_eq!(sparse.entries(0..2).unwrap(), (vec![1, 4], vec![1.0, 2.0]));
    let dense = file
        .matrix(&MatrixSelection::Layer("dense_counts".into()))
        .unwrap();
    assert_eq!(
        dense.dense_rows(1..2).unwrap(),
        vec![3.0, 0.0, 0.0, 4.0, 0.0]
    );
}

#[test]
fn a_missing_layer_lists_the_available_ones() {
    let file = open_fixture("dense.h5ad");
    let error = file
        .matrix(&MatrixSelection::Layer("spliced".into()))
        .err()
        .unwrap();
    let message = error.to_string();
    assert!(
        message.ends_with(
            "dense.h5ad: layers/spliced: missing layer 'spliced' (available: counts, dense_counts)"
        ),
        "{message}"
    );
}

#[test]
fn raw_has_its_own_matrix_and_genes() {
    let file = open_fixture("dense.h5ad");
    let raw = file.matrix(&MatrixSelection::Raw).unwrap();
    assert_eq!(
        (raw.shape(), raw.encoding(), raw.nnz()),
        ((4, 5), MatrixEncoding::Csr, 8)
    );
    let genes = file.var(&MatrixSelection::Raw).unwrap().read(0..2).unwrap();
    assert_eq!(plain_strings(&genes, "gene_id"), ["rawgene0", "rawgene1"]);
    let genes = file
        .var(&MatrixSelection::Layer("counts".into()))
        .unwrap()
        .read(0..2)
        .unwrap();
    assert_eq!(plain_strings(&genes, "gene_id"), ["gene0", "gene1"]);
}

#[test]
fn skipped_names_every_part_not_chosen() {
    let file = open_fixture("dense.h5ad");
    assert_eq!(
        file.skipped(&MatrixSelection::X),
        [
            "layers/counts",
            "layers/dense_counts",
            "obsm/X_pca",
            "obsp/distances",
            "raw",
            "uns",
            "varm/PCs"
        ]
    );
    assert_eq!(
        file.skipped(&MatrixSelection::Raw),
        [
            "X",
            "layers/counts",
            "layers/dense_counts",
            "obsm/X_pca",
            "obsp/distances",
            "uns",
            "var",
            "varm/PCs"
        ]
    );
    assert_eq!(
        file.skipped(&MatrixSelection::Layer("counts".into())),
        [
            "X",
            "layers/dense_counts",
            "obsm/X_pca",
            "obsp/distances",
            "raw",
            "uns",
            "varm/PCs"
        ]
    );
}

#[test]
fn selection_paths_name_the_matrix() {
    assert_eq!(MatrixSelection::X.path(), "X");
    assert_eq!(MatrixSelection::Raw.path(), "raw/X");
    assert_eq!(
        MatrixSelection::Layer("counts".into()).path(),
        "layers/counts"
    );
}

#[test]
fn ranges_past_the_end_are_refused() {
    let x = fixture_x("csc.h5ad");
    let pointers = x.pointers(3..6).unwrap_err().to_string();
    assert!(
        pointers.ends_with("csc.h5ad: X/indptr: bad request: range 3..6 is outside 0..5"),
        "{pointers}"
    );
    let entries = x.entries(7..9).unwrap_err().to_string();
    assert!(
        entries.contains("X/indices: bad request: range 7..9 is outside 0..8"),
        "{entries}"
    );
    assert!(x.dense_rows(0..1).is_err());
}

#[test]
fn anndata_0_6_sparse_attributes_are_understood() {
    let x = fixture_x("h5sparse.h5ad");
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((4, 5), MatrixEncoding::Csr, 8)
    );
    assert_eq!(x.pointers(0..4).unwrap(), vec![0, 2, 4, 4, 8]);
}

#[test]
fn readers_can_move_to_another_thread() {
    let file = open_fixture("csc.h5ad");
    let x = file.matrix(&MatrixSelection::X).unwrap();
    let obs = file.obs().unwrap();
    let (pointers, rows) = std::thread::spawn(move || {
        (
            x.pointers(0..5).unwrap(),
            obs.read(0..4).unwrap().num_rows(),
        )
    })
    .join()
    .unwrap();
    assert_eq!((pointers.len(), rows), (6, 4));
}
