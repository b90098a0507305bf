//! wu2020_200_v0_11.h5ad: 200 cells x 30,727 genes, float32 CSR counts, current
//! encoding, uncompressed. Expected values were read with h5py and anndata 0.12.

use crate::common;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_schema::DataType;
use cellflight_h5ad::{MatrixEncoding, MatrixSelection};
use common::*;

const FILE: &str = "wu2020_200_v0_11.h5ad";

#[test]
fn x_is_a_200_by_30727_csr_matrix() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    assert_eq!(x.shape(), (200, 30727));
    assert_eq!(x.encoding(), MatrixEncoding::Csr);
    assert_eq!(x.nnz(), 198_277);
}

#[test]
fn pointers_are_read_by_row_range() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    assert_eq!(x.pointers(0..2).unwrap(), vec![0, 1507, 2570]);
    assert_eq!(
        x.pointers(198..200).unwrap(),
        vec![196_876, 197_981, 198_277]
    );
    assert_eq!(x.pointers(5..5).unwrap().len(), 1);
}

#[test]
fn the_first_row_starts_with_known_entries() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    let (indices, values) = x.entries(0..6).unwrap();
    assert_eq!(indices, vec![22, 251, 258, 287, 306, 308]);
    assert_eq!(values, vec![2.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(x.values(0..6).unwrap(), values);
}

#[test]
fn the_last_row_ends_with_known_entries() {
    let x = open_real(FILE).matrix(&MatrixSelection::X).unwrap();
    let (indices, values) = x.entries(198_274..198_277).unwrap();
    assert_eq!(indices, vec![30708, 30710, 30720]);
    assert_eq!(values, vec![1.0, 1.0, 1.0]);
}

#[test]
fn obs_has_the_index_then_every_column_in_column_order() {
    let obs = open_real(FILE).obs().unwrap();
    assert_eq!(obs.n_rows(), 200);
    let schema = obs.schema();
    assert_eq!(schema.fields().len(), 46);
    let index = schema.field(0);
    assert_eq!(
        (
            index.name().as_str(),
            index.data_type(),
            index.is_nullable()
        ),
        ("obs_name", &DataType::Utf8, false)
    );
    let first: Vec<&str> = schema.fields()[1..5]
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(first, ["cluster_orig", "patient", "sample", "source"]);
    let last: Vec<&str> = schema.fields()[43..]
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(last, ["has_ir", "batch", "extra_chains"]);
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    assert_eq!(
        schema.field_with_name("batch").unwrap().data_type(),
        &dictionary
    );
    assert_eq!(
        schema
            .field_with_name("IR_VJ_1_duplicate_count")
            .unwrap()
            .data_type(),
        &DataType::Float64
    );
}

#[test]
fn obs_rows_read_the_values_anndata_reads() {
    let batch = open_real(FILE).obs().unwrap().read(0..3).unwrap();
    assert_eq!(
        plain_strings(&batch, "obs_name"),
        [
            "LN2_CACACTCCAGGCGATA-1-2",
            "LN3_GGTGCGTGTGAGTGAC-2-11",
            "ET2_GGGTTGCTCTTGCAAG-1-22"
        ]
    );
    let first = |column| categories(&batch, column)[0].clone();
    assert_eq!(first("cluster_orig").as_deref(), Some("4.4-FOS"));
    assert_eq!(first("patient").as_deref(), Some("Lung2"));
    assert_eq!(first("batch").as_deref(), Some("2"));
}

#[test]
fn missing_values_are_nulls_and_nan_stays_nan() {
    let batch = open_real(FILE).obs().unwrap().read(0..200).unwrap();
    assert_eq!(null_count(&batch, "IR_VJ_1_d_call"), 74);
    assert_eq!(null_count(&batch, "extra_chains"), 200);
    let counts = batch.column_by_name("IR_VJ_1_duplicate_count").unwrap();
    let nans = counts
        .as_primitive::<Float64Type>()
        .values()
        .iter()
        .filter(|v| v.is_nan())
        .count();
    assert_eq!((counts.null_count(), nans), (0, 74));
}

#[test]
fn categoricals_carry_the_full_category_lists() {
    let obs = open_real(FILE).obs().unwrap();
    let categoricals = obs.categoricals();
    assert_eq!(categoricals.len(), 41);
    let batch = categoricals.iter().find(|c| c.column == "batch").unwrap();
    let expected: Vec<String> = [
        "0", "1", "2", "3", "5", "6", "7", "8", "9", "10", "11", "12", "14", "15", "16", "17",
        "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!((batch.categories.clone(), batch.ordered), (expected, false));
    let empty = categoricals
        .iter()
        .find(|c| c.column == "extra_chains")
        .unwrap();
    assert!(empty.categories.is_empty());
}

#[test]
fn reading_in_ranges_matches_reading_whole() {
    let obs = open_real(FILE).obs().unwrap();
    let whole = obs.read(0..200).unwrap();
    let parts = [obs.read(0..77).unwrap(), obs.read(77..200).unwrap()];
    let joined = concat_names_and_clonotypes(&parts);
    assert_eq!(plain_strings(&whole, "obs_name"), joined.0);
    assert_eq!(categories(&whole, "clonotype_orig"), joined.1);
}

/// obs_name and clonotype_orig of consecutive batches, concatenated.
fn concat_names_and_clonotypes(
    parts: &[arrow_array::RecordBatch],
) -> (Vec<String>, Vec<Option<String>>) {
    let names = parts
        .iter()
        .flat_map(|b| plain_strings(b, "obs_name"))
        .collect();
    let clonotypes = parts
        .iter()
        .flat_map(|b| categories(b, "clonotype_orig"))
        .collect();
    (names, clonotypes)
}

#[test]
fn var_index_is_gene_id_as_is() {
    let var = open_real(FILE).var(&MatrixSelection::X).unwrap();
    assert_eq!(var.n_rows(), 30727);
    let last = var.read(30726..30727).unwrap();
    assert_eq!(names(&last), ["gene_id", "gene_ids", "feature_types"]);
    assert_eq!(plain_strings(&last, "gene_id"), ["LOC102723532"]);
    assert_eq!(plain_strings(&last, "gene_ids"), ["GeneID:102723532"]);
    assert_eq!(
        categories(&last, "feature_types"),
        [Some("Gene Expression".to_string())]
    );
}

#[test]
fn skipped_lists_obsm_entries_and_uns() {
    let file = open_real(FILE);
    assert_eq!(
        file.skipped(&MatrixSelection::X),
        ["obsm/X_umap_orig", "uns"]
    );
}
