//! What `generate` promises, checked on datasets small enough for the dev profile.

use std::collections::HashSet;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, UInt16Type, UInt32Type};
use arrow_array::{Array, ArrayRef};
use cellflight_generate::{generate, GenerateError, GenerateOptions};
use cellflight_schemas::ValueType;
use cellflight_store::Dataset;

fn options(dir: &Path, name: &str, cells: u64, genes: u64, seed: u64) -> GenerateOptions {
    GenerateOptions {
        genes,
        seed,
        ..GenerateOptions::new(dir.join(name), cells)
    }
}

fn run(options: &GenerateOptions) -> Dataset {
    generate(options, &|_| {}).unwrap();
    Dataset::open(&options.output).unwrap()
}

fn run_in_pool(threads: usize, options: &GenerateOptions) -> Dataset {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| run(options))
}

/// The matrix's (indices, values) columns, batch by batch.
fn matrix_columns(dataset: &Dataset) -> Vec<Vec<ArrayRef>> {
    let matrix = dataset.matrix().unwrap();
    let cells = matrix.cells(0..matrix.n_cells()).unwrap();
    cells.iter().map(|batch| batch.columns().to_vec()).collect()
}

/// Every value of the matrix, cell after cell.
fn matrix_values(dataset: &Dataset) -> Vec<u16> {
    let mut values = Vec::new();
    for columns in matrix_columns(dataset) {
        let list = columns[1].as_list::<i32>();
        values.extend(
            list.values()
                .as_primitive::<UInt16Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    values
}

/// Column `name` of the cells table, batch by batch.
fn cell_column(dataset: &Dataset, name: &str) -> Vec<ArrayRef> {
    let reader = dataset.cells().build().unwrap();
    reader
        .map(|batch| batch.unwrap().column_by_name(name).unwrap().clone())
        .collect()
}

/// Categorical `name`, as positions in its manifest category list (a stored
/// batch's dictionary need not be the full list).
fn codes(dataset: &Dataset, name: &str) -> Vec<i32> {
    let categories = categories(dataset, name);
    let mut codes = Vec::new();
    for array in cell_column(dataset, name) {
        let array = array.as_dictionary::<Int32Type>();
        let labels = array.values().as_string::<i32>();
        for &key in array.keys().values() {
            let label = labels.value(key as usize);
            codes.push(categories.iter().position(|c| c == label).unwrap() as i32);
        }
    }
    codes
}

fn categories(dataset: &Dataset, name: &str) -> Vec<String> {
    let categorical = dataset.manifest().cell_categorical(name);
    categorical
        .expect("a categorical column")
        .categories
        .clone()
}

fn int64s(dataset: &Dataset, name: &str) -> Vec<i64> {
    let arrays = cell_column(dataset, name);
    arrays
        .iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn floats(dataset: &Dataset, name: &str) -> Vec<f64> {
    let arrays = cell_column(dataset, name);
    arrays
        .iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().values().to_vec())
        .collect()
}

fn stat_n_genes(dataset: &Dataset) -> Vec<i64> {
    let arrays = cell_column(dataset, "stat_n_genes");
    let values = arrays
        .iter()
        .flat_map(|a| a.as_primitive::<UInt32Type>().values().to_vec());
    values.map(i64::from).collect()
}

#[test]
fn the_same_seed_gives_the_same_data_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let one = run_in_pool(1, &options(dir.path(), "one", 3000, 3000, 7));
    let two = run_in_pool(2, &options(dir.path(), "two", 3000, 3000, 7));
    assert_eq!(matrix_columns(&one), matrix_columns(&two));
    assert_eq!(codes(&one, "cell_line"), codes(&two, "cell_line"));
    assert_eq!(floats(&one, "total_counts"), floats(&two, "total_counts"));
    assert_eq!(one.manifest().nnz, two.manifest().nnz);
}

#[test]
fn a_different_seed_gives_different_data() {
    let dir = tempfile::tempdir().unwrap();
    let seven = run(&options(dir.path(), "seven", 500, 3000, 7));
    let eight = run(&options(dir.path(), "eight", 500, 3000, 8));
    assert_ne!(matrix_columns(&seven), matrix_columns(&eight));
    assert_ne!(codes(&seven, "cell_line"), codes(&eight, "cell_line"));
}

#[test]
fn cells_are_grouped_by_plate_then_drug_over_all_labels() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = run(&options(dir.path(), "labels", 6000, 400, 1));
    let (plates, drugs) = (codes(&dataset, "plate"), codes(&dataset, "drug"));
    let wells: Vec<(i32, i32)> = plates.iter().copied().zip(drugs.iter().copied()).collect();
    assert!(
        wells.windows(2).all(|w| w[0] <= w[1]),
        "plate then drug order"
    );
    assert_eq!(plates.iter().collect::<HashSet<_>>().len(), 14);
    assert_eq!(
        codes(&dataset, "cell_line")
            .iter()
            .collect::<HashSet<_>>()
            .len(),
        50
    );
    assert_eq!(categories(&dataset, "plate").len(), 14);
    assert_eq!(categories(&dataset, "cell_line").len(), 50);
    assert_eq!(categories(&dataset, "drug").len(), 380);
    assert_eq!(categories(&dataset, "drug")[0], "DMSO_TF");
    assert_eq!(categories(&dataset, "dose").len(), 3);
    assert_eq!(categories(&dataset, "sample").len(), 14 * 380);
}

#[test]
fn each_well_has_one_dose_and_one_sample() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = run(&options(dir.path(), "wells", 6000, 400, 2));
    let (plates, drugs) = (codes(&dataset, "plate"), codes(&dataset, "drug"));
    let (doses, samples) = (codes(&dataset, "dose"), codes(&dataset, "sample"));
    let sample_names = categories(&dataset, "sample");
    let dose_names = categories(&dataset, "dose");
    for i in 0..plates.len() {
        let name = &sample_names[samples[i] as usize];
        let expected = format!("smp_p{}_d{:03}_{}", plates[i] + 1, drugs[i], doses[i]);
        assert_eq!(name, &expected, "cell {i}");
        assert!(dose_names[doses[i] as usize].ends_with("uM"));
    }
}

#[test]
fn tahoe_sized_cells_have_about_1500_genes_and_70_percent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = run(&options(dir.path(), "tahoe", 1500, 62_710, 0));
    let manifest = dataset.manifest();
    assert_eq!(
        manifest.matrix.as_ref().unwrap().value_type,
        ValueType::UInt16
    );
    let mean_genes = manifest.nnz as f64 / manifest.n_cells as f64;
    assert!(
        (1400.0..1600.0).contains(&mean_genes),
        "{mean_genes} genes a cell"
    );
    let values = matrix_values(&dataset);
    assert!(values.iter().all(|&v| v >= 1), "no stored zeros");
    let ones = values.iter().filter(|&&v| v == 1).count() as f64 / values.len() as f64;
    assert!((0.65..0.75).contains(&ones), "{ones} of non-zeros are 1");
    let large = values.iter().filter(|&&v| v >= 100).count();
    assert!(large > 0, "the tail reaches 100");
}

#[test]
fn qc_columns_equal_the_row_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = run(&options(dir.path(), "qc", 2500, 1000, 3));
    assert_eq!(int64s(&dataset, "n_genes"), stat_n_genes(&dataset));
    assert_eq!(
        floats(&dataset, "total_counts"),
        floats(&dataset, "stat_total")
    );
}

#[test]
fn rows_hold_sorted_distinct_genes_in_range() {
    let dir = tempfile::tempdir().unwrap();
    let genes = 300;
    let dataset = run(&options(dir.path(), "rows", 1100, genes, 4));
    for columns in matrix_columns(&dataset) {
        let indices = columns[0].as_list::<i32>();
        for cell in 0..indices.len() {
            let row = indices.value(cell);
            let row = row.as_primitive::<UInt16Type>().values();
            assert!(!row.is_empty());
            assert!(row.windows(2).all(|w| w[0] < w[1]));
            assert!(row.iter().all(|&g| u64::from(g) < genes));
        }
    }
}

#[test]
fn tiny_gene_sets_work() {
    let dir = tempfile::tempdir().unwrap();
    for genes in [1, 2, 5] {
        let dataset = run(&options(dir.path(), &format!("g{genes}"), 30, genes, 0));
        assert_eq!(dataset.manifest().n_genes, genes);
        assert!(dataset.manifest().nnz >= 30);
    }
}

#[test]
fn obs_only_keeps_labels_and_n_genes_and_approximates_totals() {
    let dir = tempfile::tempdir().unwrap();
    let full = run(&options(dir.path(), "full", 2100, 2000, 5));
    let obs_only = run(&GenerateOptions {
        obs_only: true,
        ..options(dir.path(), "obs", 2100, 2000, 5)
    });
    assert!(obs_only.matrix().is_none());
    assert_eq!(obs_only.manifest().n_cells, 2100);
    assert_eq!(codes(&obs_only, "cell_line"), codes(&full, "cell_line"));
    assert_eq!(int64s(&obs_only, "n_genes"), int64s(&full, "n_genes"));
    assert_eq!(int64s(&obs_only, "n_genes"), stat_n_genes(&obs_only));
    let (approximate, exact) = (
        floats(&obs_only, "total_counts"),
        floats(&full, "total_counts"),
    );
    assert_eq!(approximate, floats(&obs_only, "stat_total"));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let ratio = mean(&approximate) / mean(&exact);
    assert!(
        (0.95..1.05).contains(&ratio),
        "obs-only totals are {ratio} of the full ones"
    );
}

#[test]
fn progress_counts_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let written = std::cell::Cell::new(0);
    let options = options(dir.path(), "progress", 2500, 100, 0);
    generate(&options, &|cells| written.set(written.get() + cells)).unwrap();
    assert_eq!(written.get(), 2500);
}

#[test]
fn bad_options_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let refusal = |options: GenerateOptions| generate(&options, &|_| {}).unwrap_err();
    let base = options(dir.path(), "bad", 10, 100, 0);
    let no_cells = refusal(GenerateOptions {
        cells: 0,
        ..base.clone()
    });
    assert!(matches!(no_cells, GenerateError::NoCells));
    assert!(no_cells.to_string().contains("--cells"));
    for genes in [0, u64::from(u32::MAX) + 1] {
        let error = refusal(GenerateOptions {
            genes,
            ..base.clone()
        });
        assert!(matches!(error, GenerateError::GeneCount(g) if g == genes));
        assert!(error.to_string().contains("--genes"));
    }
    let both = refusal(GenerateOptions {
        obs_only: true,
        h5ad: Some(dir.path().join("x.h5ad")),
        ..base.clone()
    });
    assert!(matches!(both, GenerateError::H5adWithObsOnly));
    assert!(both.to_string().contains("--h5ad") && both.to_string().contains("--obs-only"));
    assert!(!base.output.exists(), "nothing is written for bad options");
}

#[test]
fn an_existing_dataset_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let first = options(dir.path(), "again", 10, 100, 0);
    run(&first);
    let refused = generate(&first, &|_| {}).unwrap_err();
    assert!(matches!(refused, GenerateError::Store(_)), "{refused}");
    let replaced = run(&GenerateOptions {
        replace: true,
        cells: 20,
        ..first
    });
    assert_eq!(replaced.manifest().n_cells, 20);
}

#[test]
fn provenance_records_the_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = run(&options(dir.path(), "origin", 10, 100, 9));
    let provenance = &dataset.manifest().provenance;
    assert_eq!(provenance.source, "generate");
    assert_eq!(provenance.matrix, "X");
    let expected = serde_json::json!({"cells": 10, "genes": 100, "seed": 9, "obs_only": false});
    assert_eq!(provenance.parameters, Some(expected));
    assert!(dataset.manifest().skipped.is_empty());
    assert!(dataset.manifest().genes.categoricals.is_empty());
    let verified = cellflight_store::verify(dataset.dir()).unwrap();
    assert!(verified.is_empty(), "{verified:?}");
}
