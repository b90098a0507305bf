//! Datasets published to an object store (an in-memory one here; the
//! end-to-end tests use an S3-compatible server) and read back by byte
//! ranges: the same rows as the local file, versions that never mix.

// Lists of runs of cells, some of them of one run, are what these tests mean.
#![allow(clippy::single_range_in_vec_init)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_array::cast::AsArray;
use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::ValueType;
use cellflight_store::*;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;

use crate::support::test_description;

const N_CELLS: u64 = 23;
const N_GENES: u64 = 300;

/// A dataset of `N_CELLS` cells, 4 a stored batch, some of them empty,
/// with values that depend on `seed`.
fn write_dataset(dir: &Path, seed: u64) -> Dataset {
    let mut indptr = vec![0u64];
    let (mut indices, mut values) = (Vec::new(), Vec::new());
    for cell in 0..N_CELLS {
        let genes = if cell % 5 == 3 {
            0
        } else {
            (cell * 7 + seed) % 40 + 1
        };
        for k in 0..genes {
            indices.push(((k * 7 + cell) % N_GENES) as u32);
            values.push(((cell + k + seed) % 9 + 1) as f64);
        }
        let row = &mut indices[*indptr.last().unwrap() as usize..];
        row.sort_unstable();
        indptr.push(indices.len() as u64);
    }
    let obs = names(OBS_NAME, (0..N_CELLS).map(|i| format!("cell_{i}")));
    let genes = names(GENE_ID, (0..N_GENES).map(|g| format!("g{g}")));
    let spec = DatasetSpec {
        n_genes: N_GENES,
        matrix: Some(MatrixSpec {
            value_type: ValueType::Float32,
            cells_per_batch: 4,
        }),
    };
    let mut writer = DatasetWriter::create(dir, spec, WriteMode::Replace).unwrap();
    let rows = CellRows::Expression(CsrRows {
        indptr: &indptr,
        indices: &indices,
        values: &values,
    });
    writer.append(rows, &obs).unwrap();
    writer.finish(&genes, test_description(vec![])).unwrap();
    Dataset::open(dir).unwrap()
}

/// A table of one string column, `column`.
fn names(column: &str, values: impl Iterator<Item = String>) -> RecordBatch {
    let field = Field::new(column, DataType::Utf8, false);
    let values = StringArray::from(values.collect::<Vec<_>>());
    RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![Arc::new(values)]).unwrap()
}

/// Every row of `batches`, as (indices, values) lists.
fn rows(batches: &[RecordBatch]) -> Vec<(String, String)> {
    batches
        .iter()
        .flat_map(|batch| {
            let (indices, values) = (
                batch.column(0).as_list::<i32>(),
                batch.column(1).as_list::<i32>(),
            );
            (0..batch.num_rows())
                .map(|i| {
                    (
                        format!("{:?}", indices.value(i)),
                        format!("{:?}", values.value(i)),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    local: std::path::PathBuf,
    remote: RemoteStore,
    cache: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("cells");
    write_dataset(&local, 1);
    let remote = RemoteStore::new(
        "memory://test/atlas",
        Arc::new(InMemory::new()),
        ObjectPath::from("atlas"),
    );
    publish(&remote, &local, false).unwrap();
    let cache = dir.path().join("cache");
    Fixture {
        _dir: dir,
        local,
        remote,
        cache,
    }
}

fn catalog(fixture: &Fixture, cache_bytes: u64) -> RemoteCatalog {
    let config = RemoteCatalogConfig {
        cache_dir: fixture.cache.clone(),
        cache_bytes,
    };
    RemoteCatalog::open(fixture.remote.clone(), &config).unwrap()
}

/// The matrix of the current version of `cells`.
fn current_matrix(catalog: &RemoteCatalog) -> Arc<RemoteMatrix> {
    let dataset = catalog.open_current("cells").unwrap();
    dataset.remote_matrix().unwrap().clone()
}

#[test]
fn rows_read_by_ranges_equal_the_local_files_rows() {
    let fixture = fixture();
    let local = Dataset::open(&fixture.local).unwrap();
    let catalog = catalog(&fixture, 1 << 30);
    assert_eq!(catalog.names().unwrap(), vec!["cells".to_string()]);
    let remote = catalog.open_current("cells").unwrap();
    assert_eq!(remote.manifest(), local.manifest());
    let matrix = remote.remote_matrix().expect("a remote matrix");
    assert!(remote.matrix().is_none());
    for runs in [
        vec![0..N_CELLS],
        vec![0..1, 3..4, 5..11, 22..23],
        vec![4..8],
        vec![7..7],
    ] {
        let expected: Vec<RecordBatch> = runs
            .iter()
            .flat_map(|run| local.matrix().unwrap().cells(run.clone()).unwrap())
            .collect();
        assert_eq!(
            rows(&matrix.cells(&runs).unwrap()),
            rows(&expected),
            "{runs:?}"
        );
    }
}

#[test]
fn a_second_read_comes_from_the_cache_and_a_damaged_block_is_fetched_again() {
    let fixture = fixture();
    let catalog = catalog(&fixture, 1 << 30);
    let matrix = current_matrix(&catalog);
    let first = rows(&matrix.cells(&[0..N_CELLS]).unwrap());
    let gets = catalog.stats().gets;
    assert_eq!(rows(&matrix.cells(&[0..N_CELLS]).unwrap()), first);
    assert_eq!(catalog.stats().gets, gets, "no GET the second time");
    for file in walk(&fixture.cache.join("blocks")) {
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[0] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
    }
    assert_eq!(rows(&matrix.cells(&[0..N_CELLS]).unwrap()), first);
    assert!(catalog.stats().blocks_rejected > 0);
    assert!(
        catalog.stats().gets > gets,
        "damaged blocks were fetched again"
    );
}

#[test]
fn a_cache_smaller_than_a_block_still_reads_right() {
    let fixture = fixture();
    let local = Dataset::open(&fixture.local).unwrap();
    let catalog = catalog(&fixture, 100);
    let matrix = current_matrix(&catalog);
    let expected = local.matrix().unwrap().cells(0..N_CELLS).unwrap();
    assert_eq!(rows(&matrix.cells(&[0..N_CELLS]).unwrap()), rows(&expected));
    assert_eq!(catalog.stats().cache_bytes, 0);
}

#[test]
fn a_replaced_version_stays_readable_until_pruned() {
    let fixture = fixture();
    let catalog = catalog(&fixture, 1 << 30);
    let old = catalog
        .open_current("cells")
        .unwrap()
        .manifest()
        .version
        .clone();
    let error = publish(&fixture.remote, &fixture.local, false).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("memory://test/atlas/cells/manifest.json"),
        "{error}"
    );
    write_dataset(&fixture.local, 2);
    let new = publish(&fixture.remote, &fixture.local, true)
        .unwrap()
        .version;
    assert_ne!(old, new);
    assert_eq!(
        catalog.open_current("cells").unwrap().manifest().version,
        new
    );
    let reopened = catalog.open_version("cells", &old).unwrap();
    assert_eq!(reopened.manifest().version, old);

    let kept = prune(
        &fixture.remote,
        "cells",
        Duration::from_secs(3600),
        SystemTime::now(),
    )
    .unwrap();
    assert!(kept.removed.is_empty());
    let later = SystemTime::now() + Duration::from_secs(2);
    let pruned = prune(&fixture.remote, "cells", Duration::from_secs(1), later).unwrap();
    assert_eq!(
        (pruned.removed, pruned.kept),
        (vec![old.clone()], vec![new])
    );
    let gone = catalog.open_version("cells", &old).unwrap_err();
    assert!(gone.is_not_found(), "{gone}");
}

#[test]
fn table_copies_of_versions_no_longer_served_are_removed_and_open_ones_still_read() {
    let fixture = fixture();
    let catalog = catalog(&fixture, 1 << 30);
    let old = catalog.open_current("cells").unwrap();
    write_dataset(&fixture.local, 2);
    publish(&fixture.remote, &fixture.local, true).unwrap();
    let new = catalog.open_current("cells").unwrap();
    let (old_version, new_version) = (&old.manifest().version, &new.manifest().version);
    let copies = || {
        let mut versions: Vec<String> = std::fs::read_dir(fixture.cache.join("tables/cells"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        versions.sort();
        versions
    };
    let mut both = vec![old_version.clone(), new_version.clone()];
    both.sort();
    assert_eq!(copies(), both);

    catalog.retain_table_copies([new.manifest()]).unwrap();
    assert_eq!(copies(), vec![new_version.clone()]);
    let cells: usize = old
        .cells()
        .build()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(cells as u64, N_CELLS, "the old version, open, still reads");
    let reopened = catalog.open_version("cells", old_version).unwrap();
    assert_eq!(
        &reopened.manifest().version,
        old_version,
        "and is copied again when asked for"
    );
}

#[test]
fn a_server_starts_without_the_table_copies_of_an_earlier_run() {
    let fixture = fixture();
    let version = catalog(&fixture, 1 << 30)
        .open_current("cells")
        .unwrap()
        .manifest()
        .version
        .clone();
    assert!(fixture.cache.join("tables/cells").join(&version).exists());
    let _restarted = catalog(&fixture, 1 << 30);
    assert!(!fixture.cache.join("tables").exists());
}

#[test]
fn a_version_that_is_not_a_plain_name_is_refused_before_any_read() {
    let fixture = fixture();
    let catalog = catalog(&fixture, 1 << 30);
    for version in ["../cells", "a/b", "", &"9".repeat(65)] {
        let error = catalog.open_version("cells", version).unwrap_err();
        assert!(error.is_not_found(), "{version}: {error}");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        match entry.file_type().unwrap().is_dir() {
            true => files.extend(walk(&entry.path())),
            false => files.push(entry.path()),
        }
    }
    files
}
