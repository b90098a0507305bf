//! Every obs column kind, on tests/fixtures/obs_kinds.h5ad (6 cells, written
//! by make_fixtures.py with anndata 0.12). Expected values are the ones the
//! script writes.

use crate::common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, Int8Type, UInt16Type};
use arrow_array::RecordBatch;
use arrow_schema::DataType;
use cellflight_h5ad::DataFrame;
use common::*;

fn obs() -> DataFrame {
    open_fixture("obs_kinds.h5ad").obs().unwrap()
}

fn all_rows() -> RecordBatch {
    obs().read(0..6).unwrap()
}

fn some(values: &[Option<&str>]) -> Vec<Option<String>> {
    values.iter().map(|v| v.map(str::to_string)).collect()
}

#[test]
fn each_encoding_maps_to_its_arrow_type() {
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let expected = [
        ("obs_name", DataType::Utf8),
        ("cell_type", dictionary.clone()),
        ("stage", dictionary.clone()),
        ("int_cat", dictionary.clone()),
        ("float_cat", dictionary.clone()),
        ("bool_cat", dictionary),
        ("n_genes", DataType::Int64),
        ("small", DataType::Int8),
        ("ushort", DataType::UInt16),
        ("score", DataType::Float32),
        ("weight", DataType::Float64),
        ("is_doublet", DataType::Boolean),
        ("nullable_int", DataType::Int32),
        ("nullable_bool", DataType::Boolean),
        ("donor", DataType::Utf8),
        ("nullable_str", DataType::Utf8),
    ];
    let schema = obs().schema();
    let actual: Vec<(&str, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone()))
        .collect();
    assert_eq!(actual, expected);
    assert!(!schema.field(0).is_nullable());
    assert!(schema.fields()[1..].iter().all(|f| f.is_nullable()));
}

#[test]
fn categorical_codes_minus_one_are_null_and_unused_categories_stay() {
    let batch = all_rows();
    let expected = some(&[Some("T"), Some("B"), None, Some("T"), Some("NK"), Some("B")]);
    assert_eq!(categories(&batch, "cell_type"), expected);
    let keys = batch
        .column_by_name("cell_type")
        .unwrap()
        .as_dictionary::<Int32Type>()
        .keys()
        .clone();
    assert_eq!(
        keys.iter().collect::<Vec<_>>(),
        [Some(1), Some(0), None, Some(1), Some(2), Some(0)]
    );
    let categoricals = obs().categoricals();
    let cell_type = &categoricals[0];
    assert_eq!(
        (cell_type.column.as_str(), cell_type.ordered),
        ("cell_type", false)
    );
    assert_eq!(cell_type.categories, ["B", "T", "NK", "unused"]);
}

#[test]
fn ordered_categoricals_say_so() {
    let categoricals = obs().categoricals();
    let stage = categoricals.iter().find(|c| c.column == "stage").unwrap();
    assert_eq!(
        (stage.categories.clone(), stage.ordered),
        (vec!["early".to_string(), "mid".into(), "late".into()], true)
    );
    assert_eq!(categoricals.len(), 5);
}

#[test]
fn numeric_and_boolean_categories_are_spelled_like_pandas() {
    let categoricals = obs().categoricals();
    let list = |name: &str| common::categories_of(&categoricals, name);
    assert_eq!(list("int_cat"), ["1", "2", "3"]);
    assert_eq!(list("float_cat"), ["0.5", "1.0", "2.25"]);
    assert_eq!(list("bool_cat"), ["False", "True"]);
    let batch = all_rows();
    assert_eq!(
        categories(&batch, "int_cat"),
        some(&[Some("3"), Some("1"), Some("3"), None, Some("2"), Some("1")])
    );
    assert_eq!(categories(&batch, "bool_cat")[4], None);
}

#[test]
fn plain_columns_keep_width_and_sign() {
    let batch = all_rows();
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    assert_eq!(
        column("n_genes")
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        [10, 20, 30, 40, 50, 60]
    );
    assert_eq!(
        column("small").as_primitive::<Int8Type>().values().to_vec(),
        [-1, 0, 1, 2, 3, 127]
    );
    assert_eq!(
        column("ushort")
            .as_primitive::<UInt16Type>()
            .values()
            .to_vec(),
        [0, 1, 2, 65535, 4, 5]
    );
    let doublets: Vec<bool> = column("is_doublet").as_boolean().values().iter().collect();
    assert_eq!(doublets, [false, true, false, false, true, false]);
    assert_eq!(
        plain_strings(&batch, "donor"),
        ["d1", "d2", "d1", "d3", "d2", "d1"]
    );
}

#[test]
fn nullable_columns_take_their_nulls_from_the_mask() {
    let batch = all_rows();
    let ints = batch
        .column_by_name("nullable_int")
        .unwrap()
        .as_primitive::<Int32Type>()
        .clone();
    assert_eq!(
        ints.iter().collect::<Vec<_>>(),
        [Some(1), None, Some(3), None, Some(5), Some(6)]
    );
    let bools = batch
        .column_by_name("nullable_bool")
        .unwrap()
        .as_boolean()
        .clone();
    assert_eq!(
        bools.iter().collect::<Vec<_>>(),
        [Some(true), None, Some(false), Some(true), None, None]
    );
    assert_eq!(
        strings(&batch, "nullable_str"),
        some(&[Some("x"), None, Some("z"), Some("x"), None, Some("w")])
    );
}

#[test]
fn a_row_range_reads_only_those_rows() {
    let batch = obs().read(2..5).unwrap();
    assert_eq!(batch.num_rows(), 3);
    assert_eq!(plain_strings(&batch, "obs_name"), ["obs2", "obs3", "obs4"]);
    assert_eq!(
        categories(&batch, "cell_type"),
        some(&[None, Some("T"), Some("NK")])
    );
    assert_eq!(
        strings(&batch, "nullable_str"),
        some(&[Some("z"), Some("x"), None])
    );
    let empty = obs().read(6..6).unwrap();
    assert_eq!((empty.num_rows(), empty.num_columns()), (0, 16));
}

#[test]
fn a_frame_without_columns_is_just_its_index() {
    let var = open_fixture("obs_kinds.h5ad")
        .var(&cellflight_h5ad::MatrixSelection::X)
        .unwrap();
    let batch = var.read(0..3).unwrap();
    assert_eq!(names(&batch), ["gene_id"]);
    assert_eq!(
        plain_strings(&batch, "gene_id"),
        ["gene0", "gene1", "gene2"]
    );
    assert!(var.categoricals().is_empty());
}
