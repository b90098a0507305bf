//! The `.h5ad` beside the dataset holds the same cells, laid out as anndata
//! writes them. (anndata itself reads these files: see the crate's report;
//! here rust-hdf5 reads them back.)

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt16Type;
use cellflight_generate::{generate, GenerateError, GenerateOptions};
use cellflight_store::Dataset;
use rust_hdf5::H5File;

const CELLS: u64 = 2100;
const GENES: u64 = 700;

fn generate_with_h5ad(dir: &Path) -> (Dataset, H5File) {
    let h5ad = dir.join("cells.h5ad");
    let options = GenerateOptions {
        genes: GENES,
        seed: 11,
        h5ad: Some(h5ad.clone()),
        ..GenerateOptions::new(dir.join("cells"), CELLS)
    };
    let summary = generate(&options, &|_| {}).unwrap();
    assert_eq!(summary.h5ad.as_deref(), Some(h5ad.as_path()));
    (
        Dataset::open(&options.output).unwrap(),
        H5File::open(&h5ad).unwrap(),
    )
}

/// The dataset's rows as CSR: (indptr, indices, values).
fn dataset_csr(dataset: &Dataset) -> (Vec<i32>, Vec<i32>, Vec<f32>) {
    let (mut indptr, mut indices, mut values) = (vec![0], Vec::new(), Vec::new());
    let matrix = dataset.matrix().unwrap();
    for batch in matrix.cells(0..matrix.n_cells()).unwrap() {
        let (genes, counts) = (
            batch.column(0).as_list::<i32>(),
            batch.column(1).as_list::<i32>(),
        );
        for cell in 0..batch.num_rows() {
            let row = genes.value(cell);
            indices.extend(
                row.as_primitive::<UInt16Type>()
                    .values()
                    .iter()
                    .map(|&g| i32::from(g)),
            );
            let row = counts.value(cell);
            values.extend(
                row.as_primitive::<UInt16Type>()
                    .values()
                    .iter()
                    .map(|&v| f32::from(v)),
            );
            indptr.push(indices.len() as i32);
        }
    }
    (indptr, indices, values)
}

#[test]
fn x_holds_the_dataset_matrix_as_csr() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, file) = generate_with_h5ad(dir.path());
    let (indptr, indices, values) = dataset_csr(&dataset);
    let nnz = dataset.manifest().nnz as usize;
    assert_eq!(file.dataset("X/data").unwrap().shape(), [nnz]);
    assert_eq!(
        file.dataset("X/indptr").unwrap().read_raw::<i32>().unwrap(),
        indptr
    );
    assert_eq!(
        file.dataset("X/indices")
            .unwrap()
            .read_raw::<i32>()
            .unwrap(),
        indices
    );
    assert_eq!(
        file.dataset("X/data").unwrap().read_raw::<f32>().unwrap(),
        values
    );
    let x = file.root_group().group("X").unwrap();
    assert_eq!(x.attr_string("encoding-type").unwrap(), "csr_matrix");
    assert_eq!(x.attr_string("encoding-version").unwrap(), "0.1.0");
    // rust-hdf5 cannot read a group's numeric attribute back; anndata reads
    // `shape` (int64 [cells, genes]) and `ordered` (bool) fine.
    assert!(x.attr_names().unwrap().contains(&"shape".to_owned()));
    let plate = file
        .root_group()
        .group("obs")
        .unwrap()
        .group("plate")
        .unwrap();
    assert!(plate.attr_names().unwrap().contains(&"ordered".to_owned()));
}

#[test]
fn x_arrays_are_resizable_chunked_and_uncompressed_like_h5py_makes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = generate_with_h5ad(dir.path());
    for name in ["X/data", "X/indices", "X/indptr"] {
        let dataset = file.dataset(name).unwrap();
        assert_eq!(dataset.max_shape().unwrap(), [None], "{name}");
        assert!(dataset.is_chunked(), "{name}");
        assert!(dataset.filters().unwrap().is_empty(), "{name}");
    }
    assert_eq!(
        file.dataset("X/indptr").unwrap().chunk_dims(),
        Some(vec![CELLS as usize + 1])
    );
}

#[test]
fn the_file_and_its_elements_carry_anndata_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = generate_with_h5ad(dir.path());
    assert_eq!(file.attr_string("encoding-type").unwrap(), "anndata");
    assert_eq!(file.attr_string("encoding-version").unwrap(), "0.1.0");
    let root = file.root_group();
    for name in ["layers", "obsm", "obsp", "uns", "varm", "varp"] {
        let group = root.group(name).unwrap();
        assert_eq!(
            group.attr_string("encoding-type").unwrap(),
            "dict",
            "{name}"
        );
        assert_eq!(
            group.attr_string("encoding-version").unwrap(),
            "0.1.0",
            "{name}"
        );
    }
    for name in ["obs", "var"] {
        let group = root.group(name).unwrap();
        assert_eq!(
            group.attr_string("encoding-type").unwrap(),
            "dataframe",
            "{name}"
        );
        assert_eq!(
            group.attr_string("encoding-version").unwrap(),
            "0.2.0",
            "{name}"
        );
        assert_eq!(group.attr_string("_index").unwrap(), "_index", "{name}");
    }
}

#[test]
fn obs_holds_the_cells_labels_and_qc_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (dataset, file) = generate_with_h5ad(dir.path());
    let names = file
        .dataset("obs/_index")
        .unwrap()
        .read_vlen_strings()
        .unwrap();
    assert_eq!(names.len(), CELLS as usize);
    assert_eq!(names[0], "cell_0000");
    assert_eq!(names[2099], "cell_2099");
    let plates = file
        .dataset("obs/plate/codes")
        .unwrap()
        .read_raw::<i8>()
        .unwrap();
    assert_eq!(plates.len(), CELLS as usize);
    assert!(plates.windows(2).all(|w| w[0] <= w[1]));
    let plate_names = file
        .dataset("obs/plate/categories")
        .unwrap()
        .read_vlen_strings()
        .unwrap();
    assert_eq!(plate_names.len(), 14);
    let samples = file
        .dataset("obs/sample/codes")
        .unwrap()
        .read_raw::<i16>()
        .unwrap();
    assert_eq!(samples.len(), CELLS as usize);
    let drugs = file
        .dataset("obs/drug/categories")
        .unwrap()
        .read_vlen_strings()
        .unwrap();
    assert_eq!(drugs[0], "DMSO_TF");
    let n_genes = file
        .dataset("obs/n_genes")
        .unwrap()
        .read_raw::<i64>()
        .unwrap();
    assert_eq!(n_genes.iter().sum::<i64>() as u64, dataset.manifest().nnz);
    let totals = file
        .dataset("obs/total_counts")
        .unwrap()
        .read_raw::<f64>()
        .unwrap();
    let (_, _, values) = dataset_csr(&dataset);
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    assert_eq!(totals.iter().sum::<f64>(), sum);
    let categorical = file
        .root_group()
        .group("obs")
        .unwrap()
        .group("dose")
        .unwrap();
    assert_eq!(
        categorical.attr_string("encoding-type").unwrap(),
        "categorical"
    );
}

#[test]
fn var_holds_gene_ids_and_symbols() {
    let dir = tempfile::tempdir().unwrap();
    let (_, file) = generate_with_h5ad(dir.path());
    let ids = file
        .dataset("var/_index")
        .unwrap()
        .read_vlen_strings()
        .unwrap();
    assert_eq!(ids.len(), GENES as usize);
    assert_eq!(ids[0], "ENSG00000000001");
    let symbols = file
        .dataset("var/gene_symbol")
        .unwrap()
        .read_vlen_strings()
        .unwrap();
    assert_eq!(symbols[GENES as usize - 1], format!("GENE{GENES}"));
}

#[test]
fn an_existing_h5ad_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let h5ad = dir.path().join("old.h5ad");
    std::fs::write(&h5ad, "not hdf5").unwrap();
    let options = GenerateOptions {
        genes: 50,
        h5ad: Some(h5ad.clone()),
        ..GenerateOptions::new(dir.path().join("new"), 10)
    };
    let refused = generate(&options, &|_| {}).unwrap_err();
    assert!(matches!(refused, GenerateError::H5adExists(_)), "{refused}");
    assert!(!options.output.exists());
    generate(
        &GenerateOptions {
            replace: true,
            ..options
        },
        &|_| {},
    )
    .unwrap();
    assert!(H5File::open(&h5ad).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the dataset and the .h5ad: {leftovers:?}"
    );
}
