//! Helpers shared by the integration tests: where the files are, and how to
//! look at a column of a record batch as plain Rust values.

use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, RecordBatch};
use cellflight_h5ad::H5ad;
use cellflight_schemas::Categorical;

/// A real file, from the directory `CELLFLIGHT_TEST_DATA` names (fetched
/// by `scripts/test.sh`; see tests/data/README.md).
pub fn real(name: &str) -> PathBuf {
    let how = "scripts/test.sh fetches them; to run these tests alone: export \
        CELLFLIGHT_TEST_DATA=\"$(python3 tests/data/fetch_real_files.py ~/.cache/cellflight/test-data)\"";
    let Some(dir) = std::env::var_os("CELLFLIGHT_TEST_DATA") else {
        panic!("CELLFLIGHT_TEST_DATA is not set, so the real .h5ad files are not found: {how}");
    };
    let path = PathBuf::from(dir).join(name);
    assert!(path.is_file(), "{} is missing: {how}", path.display());
    path
}

/// A fixture written by tests/fixtures/make_fixtures.py.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(name)
}

pub fn open_real(name: &str) -> H5ad {
    H5ad::open(&real(name)).unwrap_or_else(|e| panic!("{e}"))
}

pub fn open_fixture(name: &str) -> H5ad {
    H5ad::open(&fixture(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A Utf8 column, nulls as None.
pub fn strings(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let array = batch
        .column_by_name(column)
        .expect("column")
        .as_string::<i32>();
    array.iter().map(|v| v.map(str::to_string)).collect()
}

/// A Utf8 column with no nulls.
pub fn plain_strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    strings(batch, column)
        .into_iter()
        .map(|v| v.expect("no null"))
        .collect()
}

/// A dictionary column decoded to its category strings, nulls as None.
pub fn categories(batch: &RecordBatch, column: &str) -> Vec<Option<String>> {
    let dict = batch
        .column_by_name(column)
        .expect("column")
        .as_dictionary::<Int32Type>();
    let values = dict.values().as_string::<i32>();
    dict.keys()
        .iter()
        .map(|key| key.map(|k| values.value(k as usize).to_string()))
        .collect()
}

pub fn null_count(batch: &RecordBatch, column: &str) -> usize {
    batch.column_by_name(column).expect("column").null_count()
}

/// Field names of a schema, in order.
pub fn names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The category list of categorical column `name`.
pub fn categories_of(categoricals: &[Categorical], name: &str) -> Vec<String> {
    let categorical = categoricals.iter().find(|c| c.column == name);
    categorical
        .expect("a categorical column")
        .categories
        .clone()
}
