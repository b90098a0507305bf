//! Test datasets and an independent reader of their Parquet files.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cellflight_generate::{generate, GenerateOptions};
use cellflight_sql::{CatalogSnapshot, SqlEngine, SqlLimits};
use cellflight_store::Dataset;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Float64Type, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub const CELLS: u64 = 3000;

/// A generated dataset `root/name` (obs columns plate, cell_line, drug, dose, sample, ...).
pub fn generated(root: &Path, name: &str, cells: u64, seed: u64, replace: bool) -> Arc<Dataset> {
    let output = root.join(name);
    let options = GenerateOptions {
        output: output.clone(),
        cells,
        genes: 200,
        seed,
        h5ad: None,
        obs_only: false,
        replace,
    };
    generate(&options, &|_| {}).unwrap();
    Arc::new(Dataset::open(&output).unwrap())
}

pub fn limits() -> SqlLimits {
    SqlLimits {
        memory_bytes: 256 << 20,
        query_memory_bytes: 256 << 20,
        timeout: Duration::from_secs(60),
        max_rows: 1_000_000,
        planning_threads: 2,
    }
}

pub fn engine() -> SqlEngine {
    SqlEngine::new(limits(), None).unwrap()
}

/// A tempdir with dataset `demo` (the default) and dataset `other`.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub demo: Arc<Dataset>,
    pub snapshot: Arc<CatalogSnapshot>,
    pub engine: SqlEngine,
}

pub fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    let demo = generated(root.path(), "demo", CELLS, 7, false);
    let other = generated(root.path(), "other", 100, 8, false);
    let snapshot = CatalogSnapshot::new(vec![demo.clone(), other], Some("demo")).unwrap();
    Fixture {
        root,
        demo,
        snapshot,
        engine: engine(),
    }
}

/// `cells.parquet` of `dir`, read with the parquet crate alone.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

pub fn cells_of(dataset: &Dataset) -> RecordBatch {
    read_parquet(&dataset.dir().join("cells.parquet"))
}

fn column(batch: &RecordBatch, name: &str) -> ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .clone()
}

/// A column as text (categoricals decoded), nulls as None.
pub fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let text = cast(&column(batch, name), &DataType::Utf8).unwrap();
    text.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

pub fn u64s(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let col = cast(&column(batch, name), &DataType::UInt64).unwrap();
    assert_eq!(col.null_count(), 0, "{name} has nulls");
    col.as_primitive::<UInt64Type>().values().to_vec()
}

pub fn f64s(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    let col = cast(&column(batch, name), &DataType::Float64).unwrap();
    col.as_primitive::<Float64Type>().iter().collect()
}

/// All result batches as one.
pub fn one_batch(result: &cellflight_sql::QueryResult) -> RecordBatch {
    concat_batches(&result.schema, &result.batches).unwrap()
}
