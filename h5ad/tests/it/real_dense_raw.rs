//! 10x_pbmc68k_reduced.h5ad: 700 cells x 765 genes; X dense float32, scaled
//! (negatives); raw/X CSR, log-normalised, every row in descending gene
//! order; gzip. Values read with h5py.

use crate::common;

use arrow_schema::DataType;
use cellflight_h5ad::{MatrixEncoding, MatrixSelection};
use common::*;

const FILE: &str = "10x_pbmc68k_reduced.h5ad";

/// float32 values as h5py prints them, widened exactly.
fn f32s(values: &[f32]) -> Vec<f64> {
    values.iter().map(|&v| f64::from(v)).collect()
}

#[test]
fn x_is_dense_and_read_by_rows() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((700, 765), MatrixEncoding::Dense, 535_500)
    );
    let first = x.dense_rows(0..1).unwrap();
    assert_eq!(first.len(), 765);
    assert_eq!(
        first[..5],
        f32s(&[-0.326, -0.191, -0.728, -0.301, 3.386])[..]
    );
    let last = x.dense_rows(699..700).unwrap();
    assert_eq!(last[762..], f32s(&[-0.21, -0.636, -0.49])[..]);
    assert_eq!(x.dense_rows(10..13).unwrap().len(), 3 * 765);
}

#[test]
fn sparse_reads_on_a_dense_matrix_are_refused() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    let error = x.pointers(0..1).unwrap_err().to_string();
    assert!(
        error.contains("X: bad request: pointers() on a dense matrix"),
        "{error}"
    );
}

#[test]
fn raw_x_rows_come_back_in_stored_descending_order() {
    let raw = open_real(FILE).matrix(&MatrixSelection::Raw).unwrap();
    assert_eq!(
        (raw.shape(), raw.encoding(), raw.nnz()),
        ((700, 765), MatrixEncoding::Csr, 174_400)
    );
    assert_eq!(raw.pointers(0..2).unwrap(), vec![0, 217, 448]);
    let (indices, values) = raw.entries(0..5).unwrap();
    assert_eq!(indices, vec![764, 761, 760, 759, 758]);
    assert_eq!(values, f32s(&[2.177, 2.177, 2.544, 2.544, 1.591]));
}

#[test]
fn raw_var_is_the_gene_table_of_raw() {
    let file = open_real(FILE);
    let raw_var = file.var(&MatrixSelection::Raw).unwrap();
    assert_eq!(raw_var.n_rows(), 765);
    let batch = raw_var.read(0..3).unwrap();
    assert_eq!(names(&batch), ["gene_id"]);
    assert_eq!(
        plain_strings(&batch, "gene_id"),
        ["HES4", "TNFRSF4", "SSU72"]
    );
    let var = file.var(&MatrixSelection::X).unwrap().read(0..765).unwrap();
    assert_eq!(
        names(&var),
        [
            "gene_id",
            "n_counts",
            "means",
            "dispersions",
            "dispersions_norm",
            "highly_variable"
        ]
    );
    let highly_variable =
        arrow_array::cast::AsArray::as_boolean(var.column_by_name("highly_variable").unwrap());
    assert_eq!(highly_variable.true_count(), 309);
}

#[test]
fn obs_columns_keep_their_types() {
    let obs = open_real(FILE).obs().unwrap();
    let schema = obs.schema();
    let type_of = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(type_of("n_genes"), DataType::Int64);
    assert_eq!(type_of("percent_mito"), DataType::Float32);
    assert!(matches!(type_of("louvain"), DataType::Dictionary(..)));
    let batch = obs.read(0..3).unwrap();
    assert_eq!(
        plain_strings(&batch, "obs_name"),
        ["AAAGCCTGGCTAAC-1", "AAATTCGATGCACA-1", "AACACGTGGTCTTT-1"]
    );
    let bulk: Vec<Option<String>> = ["CD14+ Monocyte", "Dendritic", "CD56+ NK"]
        .map(|s| Some(s.to_string()))
        .to_vec();
    assert_eq!(categories(&batch, "bulk_labels"), bulk);
    let n_genes = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Int64Type>(
        batch.column_by_name("n_genes").unwrap(),
    );
    assert_eq!(n_genes.values().to_vec(), vec![1003, 1080, 1228]);
}

#[test]
fn category_lists_are_complete_and_in_order() {
    let categoricals = open_real(FILE).obs().unwrap().categoricals();
    let list = |name: &str| common::categories_of(&categoricals, name);
    assert_eq!(list("phase"), ["G1", "G2M", "S"]);
    assert_eq!(
        list("louvain"),
        ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"]
    );
    assert_eq!(list("bulk_labels").len(), 10);
    assert_eq!(list("bulk_labels")[0], "CD4+/CD25 T Reg");
}

#[test]
fn skipped_depends_on_the_matrix_chosen() {
    let file = open_real(FILE);
    let common = [
        "obsm/X_pca",
        "obsm/X_umap",
        "obsp/connectivities",
        "obsp/distances",
    ];
    let mut with_x: Vec<&str> = common.to_vec();
    with_x.extend(["raw", "uns", "varm/PCs"]);
    assert_eq!(file.skipped(&MatrixSelection::X), with_x);
    let mut with_raw = vec!["X"];
    with_raw.extend(common);
    with_raw.extend(["uns", "var", "varm/PCs"]);
    assert_eq!(file.skipped(&MatrixSelection::Raw), with_raw);
}
