//! wu2020_200_v0_6.h5ad: the same 200 cells as wu2020_200_v0_11.h5ad, 3,000
//! genes, written in the legacy encoding: no root encoding-type, dataframe
//! 0.1.0 whose categoricals are code datasets with a `categories` object
//! reference into `__categories/<column>`; gzip. Values read with h5py.

use crate::common;

use arrow_schema::DataType;
use cellflight_h5ad::{MatrixEncoding, MatrixSelection};
use common::*;

const FILE: &str = "wu2020_200_v0_6.h5ad";

#[test]
fn opens_without_a_root_encoding_type() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((200, 3000), MatrixEncoding::Csr, 49_105)
    );
}

#[test]
fn gzip_chunked_rows_read_by_range() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    assert_eq!(x.pointers(0..2).unwrap(), vec![0, 388, 678]);
    assert_eq!(x.pointers(199..200).unwrap(), vec![49_016, 49_105]);
    let (indices, values) = x.entries(0..5).unwrap();
    assert_eq!(indices, vec![0, 9, 10, 13, 15]);
    assert_eq!(values, vec![2.0, 1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn legacy_categoricals_follow_their_object_references() {
    let obs = open_real(FILE).obs().unwrap();
    assert_eq!(obs.schema().fields().len(), 45);
    let categoricals = obs.categoricals();
    let expr = categoricals
        .iter()
        .find(|c| c.column == "IR_VJ_2_expr")
        .unwrap();
    assert_eq!(expr.categories, ["2.0", "3.0", "5.0", "6.0", "None", "nan"]);
    assert!(!expr.ordered);
    let batch = obs.read(0..200).unwrap();
    assert_eq!(null_count(&batch, "IR_VJ_1_d_gene"), 74);
    let float = obs
        .schema()
        .field_with_name("IR_VJ_1_expr")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(float, DataType::Float64);
}

#[test]
fn legacy_and_current_encodings_of_the_same_cells_read_the_same() {
    let legacy = open_real(FILE).obs().unwrap().read(0..200).unwrap();
    let current = open_real("wu2020_200_v0_11.h5ad")
        .obs()
        .unwrap()
        .read(0..200)
        .unwrap();
    assert_eq!(
        plain_strings(&legacy, "obs_name"),
        plain_strings(&current, "obs_name")
    );
    for column in [
        "batch",
        "patient",
        "cluster_orig",
        "clonotype_orig",
        "has_ir",
    ] {
        assert_eq!(
            categories(&legacy, column),
            categories(&current, column),
            "{column}"
        );
    }
}

#[test]
fn legacy_var_keeps_every_column_type() {
    let var = open_real(FILE).var(&MatrixSelection::X).unwrap();
    let types: Vec<(String, DataType)> = var
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let expected = [
        ("gene_id", DataType::Utf8),
        ("gene_ids", DataType::Utf8),
        ("feature_types", dictionary),
        ("highly_variable", DataType::Boolean),
        ("highly_variable_rank", DataType::Float32),
        ("means", DataType::Float64),
        ("variances", DataType::Float64),
        ("variances_norm", DataType::Float64),
    ]
    .map(|(name, t)| (name.to_string(), t));
    assert_eq!(types, expected);
}

#[test]
fn legacy_var_rows_hold_known_values() {
    let batch = open_real(FILE)
        .var(&MatrixSelection::X)
        .unwrap()
        .read(0..1)
        .unwrap();
    assert_eq!(plain_strings(&batch, "gene_id"), ["RNA45S5"]);
    assert_eq!(plain_strings(&batch, "gene_ids"), ["GeneID:100861532"]);
    assert_eq!(
        categories(&batch, "feature_types"),
        [Some("Gene Expression".to_string())]
    );
    let means = batch.column_by_name("means").unwrap();
    let means = arrow_array::cast::AsArray::as_primitive::<arrow_array::types::Float64Type>(means);
    assert_eq!(means.value(0), 0.39066666666666666);
}

#[test]
fn skipped_lists_obsm_entries_and_uns() {
    assert_eq!(
        open_real(FILE).skipped(&MatrixSelection::X),
        ["obsm/X_umap_orig", "uns"]
    );
}
