//! The dataset directory as a whole: what is written is read back exactly,
//! publication is atomic, and verification catches damage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, DictionaryArray, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::{Categorical, ValueType};
use cellflight_store::*;

use crate::support::test_description;

/// A tiny matrix: 5 cells × 4 genes, with an explicit zero and an empty cell.
struct Example {
    indptr: Vec<u64>,
    indices: Vec<u32>,
    values: Vec<f64>,
}

fn example() -> Example {
    Example {
        indptr: vec![0, 2, 2, 5, 6, 8],
        indices: vec![0, 3, 0, 1, 2, 3, 1, 2],
        values: vec![1.0, 7.0, 2.0, 0.0, 300.0, 1.0, 4.0, 5.0],
    }
}

fn obs(names: &[&str]) -> RecordBatch {
    let plates = DictionaryArray::new(
        Int32Array::from(vec![Some(0), Some(0), None, Some(2), Some(0)][..names.len()].to_vec()),
        Arc::new(StringArray::from(vec!["p1", "p2", "p3"])),
    );
    let plate_type = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let schema = Schema::new(vec![
        Field::new(OBS_NAME, DataType::Utf8, false),
        Field::new("plate", plate_type, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names.to_vec())),
        Arc::new(plates),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}

fn genes(n: usize) -> RecordBatch {
    let ids: Vec<String> = (0..n).map(|i| format!("ENSG{i:04}")).collect();
    let schema = Schema::new(vec![Field::new(GENE_ID, DataType::Utf8, false)]);
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(StringArray::from(ids))]).unwrap()
}

fn description() -> DatasetDescription {
    DatasetDescription {
        skipped: vec!["uns".into()],
        ..test_description(vec![Categorical {
            column: "plate".into(),
            categories: vec!["p1".into(), "p2".into(), "p3".into()],
            ordered: false,
        }])
    }
}

fn spec(cells_per_batch: u32) -> DatasetSpec {
    DatasetSpec {
        n_genes: 4,
        matrix: Some(MatrixSpec {
            value_type: ValueType::UInt16,
            cells_per_batch,
        }),
    }
}

/// Writes the example in two appends (3 cells, then 2) and publishes it.
fn write_example(
    target: &Path,
    mode: WriteMode,
) -> Result<cellflight_schemas::Manifest, StoreError> {
    let ex = example();
    let mut writer = DatasetWriter::create(target, spec(2), mode)?;
    let names = ["c0", "c1", "c2", "c3", "c4"];
    let rows = |cells: std::ops::Range<usize>| {
        CellRows::Expression(CsrRows {
            indptr: &ex.indptr[cells.start..=cells.end],
            indices: &ex.indices,
            values: &ex.values,
        })
    };
    writer.append(rows(0..3), &obs(&names[..3]))?;
    writer.append(rows(3..5), &obs(&names[..2]).slice(0, 2))?;
    writer.finish(&genes(4), description())
}

fn dataset_dir() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("demo");
    (root, target)
}

fn matrix_rows(dataset: &Dataset) -> Vec<(Vec<u16>, Vec<u16>)> {
    let matrix = dataset.matrix().unwrap();
    let mut rows = Vec::new();
    for batch in matrix.cells(0..matrix.n_cells()).unwrap() {
        let indices = batch.column(0).as_list::<i32>();
        let values = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let genes = indices
                .value(row)
                .as_primitive::<UInt16Type>()
                .values()
                .to_vec();
            let vals = values
                .value(row)
                .as_primitive::<UInt16Type>()
                .values()
                .to_vec();
            rows.push((genes, vals));
        }
    }
    rows
}

#[test]
fn what_is_written_reads_back_without_explicit_zeros() {
    let (_root, target) = dataset_dir();
    let manifest = write_example(&target, WriteMode::CreateNew).unwrap();
    assert_eq!(
        (manifest.n_cells, manifest.n_genes, manifest.nnz),
        (5, 4, 7)
    );
    assert_eq!(manifest.matrix.as_ref().unwrap().n_batches, 3);

    let dataset = Dataset::open(&target).unwrap();
    assert_eq!(dataset.manifest(), &manifest);
    let expected: Vec<(Vec<u16>, Vec<u16>)> = vec![
        (vec![0, 3], vec![1, 7]),
        (vec![], vec![]),
        (vec![0, 2], vec![2, 300]),
        (vec![3], vec![1]),
        (vec![1, 2], vec![4, 5]),
    ];
    assert_eq!(matrix_rows(&dataset), expected);
}

#[test]
fn the_largest_cell_is_known_from_the_cells_footer() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    // Cells store 2, 0, 2 (one explicit zero dropped), 1 and 2 genes.
    assert_eq!(
        Dataset::open(&target).unwrap().largest_cell_genes(),
        Some(2)
    );
}

#[test]
fn a_run_of_cells_spanning_batches_is_sliced_not_copied() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let dataset = Dataset::open(&target).unwrap();
    let matrix = dataset.matrix().unwrap();
    let slices = matrix.cells(1..4).unwrap();
    assert_eq!(
        slices.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
        [1, 2]
    );
    let stored = matrix
        .batch(1)
        .unwrap()
        .column(0)
        .as_list::<i32>()
        .values()
        .to_data();
    let sliced = slices[1].column(0).as_list::<i32>().values().to_data();
    assert_eq!(stored.buffers()[0].as_ptr(), sliced.buffers()[0].as_ptr());
    assert!(matrix.cells(4..6).is_err());
}

#[test]
fn cells_and_genes_tables_carry_ids_columns_and_statistics() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let dataset = Dataset::open(&target).unwrap();

    let cells: Vec<RecordBatch> = dataset
        .cells()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let cells = arrow_select::concat::concat_batches(&cells[0].schema(), &cells).unwrap();
    assert_eq!(
        column_names(&cells),
        [CELL_ID, OBS_NAME, "plate", STAT_N_GENES, STAT_TOTAL]
    );
    assert_eq!(
        cells.column(0).as_primitive::<UInt64Type>().values(),
        &[0, 1, 2, 3, 4]
    );
    assert_eq!(
        cells.column(3).as_primitive::<UInt32Type>().values(),
        &[2, 0, 2, 1, 2]
    );
    assert_eq!(
        cells.column(4).as_primitive::<Float64Type>().values(),
        &[8.0, 0.0, 302.0, 1.0, 9.0]
    );
    assert!(matches!(
        cells.column(2).data_type(),
        DataType::Dictionary(_, _)
    ));
    assert_eq!(cells.column(2).null_count(), 1);

    let genes: Vec<RecordBatch> = dataset
        .genes()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let genes = &genes[0];
    assert_eq!(
        column_names(genes),
        [GENE_IDX, GENE_ID, STAT_N_CELLS, STAT_MEAN, STAT_VARIANCE]
    );
    assert_eq!(
        genes.column(2).as_primitive::<UInt64Type>().values(),
        &[2, 1, 2, 2]
    );
    let means = genes.column(3).as_primitive::<Float64Type>().values();
    assert_eq!(means[0], 3.0 / 5.0);
    // gene 2 holds 300 and 5 over 5 cells: variance with ddof = 1.
    let mean = 305.0 / 5.0;
    let expected = ((300.0f64 - mean).powi(2) + (5.0f64 - mean).powi(2) + 3.0 * mean * mean) / 4.0;
    let variance = genes.column(4).as_primitive::<Float64Type>().value(2);
    assert!(
        (variance - expected).abs() < 1e-9 * expected,
        "{variance} vs {expected}"
    );
}

#[test]
fn a_sound_dataset_verifies_clean() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    assert_eq!(verify(&target).unwrap(), Vec::<Fault>::new());
}

#[test]
fn verification_catches_a_manifest_that_lies() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let path = target.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"nnz\": 7", "\"nnz\": 8");
    std::fs::write(&path, text).unwrap();
    let faults = verify(&target).unwrap();
    assert!(
        faults.iter().any(|f| f.0.contains("manifest says 8")),
        "{faults:?}"
    );
}

#[test]
fn verification_catches_damaged_values() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    // Overwrite the value 300 (u16 little-endian 0x012C) with 0x0000.
    let path = target.join(MATRIX_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(2)
        .position(|w| w == [0x2C, 0x01])
        .expect("300 is stored");
    bytes[at..at + 2].copy_from_slice(&[0, 0]);
    std::fs::write(&path, bytes).unwrap();
    let faults = verify(&target).unwrap();
    assert!(!faults.is_empty());
    assert!(faults.iter().any(|f| f.0.contains("cell 2")), "{faults:?}");
}

#[test]
fn an_existing_dataset_is_refused_without_replace() {
    let (root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let err = write_example(&target, WriteMode::CreateNew).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(hidden_entries(root.path()), Vec::<String>::new());
}

#[test]
fn replace_swaps_in_a_new_version_and_removes_the_old() {
    let (root, target) = dataset_dir();
    let old = write_example(&target, WriteMode::CreateNew).unwrap();
    let new = write_example(&target, WriteMode::Replace).unwrap();
    assert_ne!(old.version, new.version);
    assert_eq!(
        Dataset::open(&target).unwrap().manifest().version,
        new.version
    );
    assert_eq!(hidden_entries(root.path()), Vec::<String>::new());
}

#[test]
fn a_reader_holding_the_old_version_keeps_reading_it() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let before = Dataset::open(&target).unwrap();
    let rows_before = matrix_rows(&before);
    write_example(&target, WriteMode::Replace).unwrap();
    assert_eq!(matrix_rows(&before), rows_before);
    assert_eq!(before.cells().metadata().file_metadata().num_rows(), 5);
}

#[test]
fn readers_racing_replacements_always_see_one_whole_version() {
    let (_root, target) = dataset_dir();
    write_example(&target, WriteMode::CreateNew).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let replacer = scope.spawn(|| {
            for _ in 0..30 {
                write_example(&target, WriteMode::Replace).unwrap();
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut opened = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let dataset = Dataset::open(&target).unwrap();
            assert_eq!(matrix_rows(&dataset).len(), 5);
            opened += 1;
        }
        replacer.join().unwrap();
        assert!(opened > 0);
    });
}

#[test]
fn an_abandoned_writer_leaves_nothing_behind() {
    let (root, target) = dataset_dir();
    let writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    assert!(writer
        .staging_dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(".demo."));
    drop(writer);
    assert!(!target.exists());
    assert_eq!(hidden_entries(root.path()), Vec::<String>::new());
}

#[test]
fn a_staging_directory_is_not_a_dataset() {
    let (root, target) = dataset_dir();
    let writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    let err = Dataset::open(writer.staging_dir()).err().unwrap();
    assert!(
        err.to_string().contains("not a cellflight dataset"),
        "{err}"
    );
    assert!(Dataset::open(&root.path().join("missing")).is_err());
}

#[test]
fn bad_rows_are_refused_with_the_cell_named() {
    let (_root, target) = dataset_dir();
    let mut writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    let out_of_range = CsrRows {
        indptr: &[0, 1],
        indices: &[4],
        values: &[1.0],
    };
    let err = writer
        .append(CellRows::Expression(out_of_range), &obs(&["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("cell 0 has gene index 4"), "{err}");

    let unsorted = CsrRows {
        indptr: &[0, 2],
        indices: &[2, 1],
        values: &[1.0, 1.0],
    };
    let err = writer
        .append(CellRows::Expression(unsorted), &obs(&["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("not strictly increasing"), "{err}");

    let fraction = CsrRows {
        indptr: &[0, 1],
        indices: &[1],
        values: &[0.5],
    };
    let err = writer
        .append(CellRows::Expression(fraction), &obs(&["a"]))
        .unwrap_err();
    assert!(err.to_string().contains("cell 0 has value 0.5"), "{err}");
}

#[test]
fn rows_checked_on_another_thread_are_stored_without_their_zeros() {
    let (_root, target) = dataset_dir();
    let mut writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    let rows = CsrRows {
        indptr: &[0, 2, 3],
        indices: &[1, 3, 0],
        values: &[2.0, 0.0, 5.0],
    };
    let check = writer.row_check();
    let checked = std::thread::spawn(move || check.check(rows, 0).unwrap())
        .join()
        .unwrap();
    assert_eq!(checked.cells(), 2);
    writer.append_checked(&checked, &obs(&["a", "b"])).unwrap();
    writer.finish(&genes(4), description()).unwrap();
    let dataset = Dataset::open(&target).unwrap();
    assert_eq!(
        matrix_rows(&dataset),
        [(vec![1], vec![2]), (vec![0], vec![5])]
    );
}

#[test]
fn checked_rows_are_refused_out_of_place_or_for_another_dataset() {
    let (_root, target) = dataset_dir();
    let mut writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    let rows = CsrRows {
        indptr: &[0, 1],
        indices: &[1],
        values: &[2.0],
    };
    let later = writer.row_check().check(rows, 5).unwrap();
    let err = writer.append_checked(&later, &obs(&["a"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("checked as cells from 5 appended as cells from 0"),
        "{err}"
    );

    let (_other_root, other_target) = dataset_dir();
    let mut wider = spec(2);
    wider.n_genes += 1;
    let other = DatasetWriter::create(&other_target, wider, WriteMode::CreateNew).unwrap();
    let foreign = other.row_check().check(rows, 0).unwrap();
    let err = writer.append_checked(&foreign, &obs(&["a"])).unwrap_err();
    assert!(err.to_string().contains("another dataset"), "{err}");

    let mine = writer.row_check().check(rows, 0).unwrap();
    let err = writer.append_checked(&mine, &obs(&["a", "b"])).unwrap_err();
    assert!(err.to_string().contains("obs has 2 rows where 1"), "{err}");
    writer.append_checked(&mine, &obs(&["a"])).unwrap();
}

#[test]
fn a_source_column_that_collides_with_an_added_one_is_refused() {
    let (_root, target) = dataset_dir();
    let mut writer = DatasetWriter::create(&target, spec(2), WriteMode::CreateNew).unwrap();
    let schema = Schema::new(vec![
        Field::new(OBS_NAME, DataType::Utf8, false),
        Field::new(STAT_TOTAL, DataType::Utf8, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec!["a"])),
        Arc::new(StringArray::from(vec!["x"])),
    ];
    let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    let rows = CsrRows {
        indptr: &[0, 0],
        indices: &[],
        values: &[],
    };
    let err = writer
        .append(CellRows::Expression(rows), &batch)
        .unwrap_err();
    assert!(err.to_string().contains("\"stat_total\""), "{err}");
}

#[test]
fn a_bad_dataset_name_is_refused_before_anything_is_written() {
    let root = tempfile::tempdir().unwrap();
    let err = DatasetWriter::create(&root.path().join("Bad-Name"), spec(2), WriteMode::CreateNew)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("invalid dataset name \"Bad-Name\""),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
}

#[test]
fn an_obs_only_dataset_has_tables_and_no_matrix() {
    let (_root, target) = dataset_dir();
    let spec = DatasetSpec {
        n_genes: 4,
        matrix: None,
    };
    let mut writer = DatasetWriter::create(&target, spec, WriteMode::CreateNew).unwrap();
    let stats = CellRows::StatisticsOnly {
        n_genes: &[3, 1],
        totals: &[5.0, 1.0],
    };
    writer.append(stats, &obs(&["a", "b"])).unwrap();
    let manifest = writer.finish(&genes(4), description()).unwrap();
    assert_eq!((manifest.matrix, manifest.nnz), (None, 0));
    let dataset = Dataset::open(&target).unwrap();
    assert!(dataset.matrix().is_none());
    assert_eq!(verify(&target).unwrap(), Vec::<Fault>::new());
}

fn hidden_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect()
}

fn column_names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

#[test]
fn a_file_from_another_version_is_named_as_damage_not_a_race() {
    let root = tempfile::tempdir().unwrap();
    let (first, second) = (root.path().join("one/demo"), root.path().join("two/demo"));
    write_example(&first, WriteMode::CreateNew).unwrap();
    let other = write_example(&second, WriteMode::CreateNew).unwrap();
    std::fs::copy(second.join(MATRIX_FILE), first.join(MATRIX_FILE)).unwrap();
    let err = Dataset::open(&first).err().unwrap().to_string();
    assert!(
        err.contains(MATRIX_FILE) && err.contains(&other.version),
        "{err}"
    );
    assert!(err.contains("damaged"), "{err}");
}
