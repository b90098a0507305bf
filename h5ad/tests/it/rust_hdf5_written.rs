//! Files written by rust-hdf5, laid out the way cellflight-generate writes its
//! .h5ad (superblock v2+, link messages, fixed-length string attributes),
//! read back. The real files and fixtures all come from h5py.

use crate::common;

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use cellflight_h5ad::{H5ad, MatrixEncoding, MatrixSelection};
use common::*;
use rust_hdf5::format::messages::datatype::EnumMember;
use rust_hdf5::{DatatypeMessage, H5File, H5Group};

fn mark(group: &H5Group, kind: &str, version: &str) {
    group.set_attr_string("encoding-type", kind).unwrap();
    group.set_attr_string("encoding-version", version).unwrap();
}

/// numpy's bool as h5py stores it: an enum FALSE/TRUE over int8.
fn bool_attr(group: &H5Group, name: &str, value: bool) {
    let member = |name: &str, value: u8| EnumMember {
        name: name.into(),
        value: vec![value],
    };
    let datatype = DatatypeMessage::Enum {
        base: Box::new(DatatypeMessage::i8_type()),
        members: vec![member("FALSE", 0), member("TRUE", 1)],
    };
    group
        .set_attr_typed(name, datatype, vec![u8::from(value)])
        .unwrap();
}

/// 3 cells x 4 genes: rows [0: gene 1 = 5], [], [1: gene 0 = 2, gene 3 = 7].
fn write(path: &Path) {
    let file = H5File::create(path).unwrap();
    file.set_attr_string("encoding-type", "anndata").unwrap();
    file.set_attr_string("encoding-version", "0.1.0").unwrap();
    let root = file.root_group();

    let x = root.create_group("X").unwrap();
    mark(&x, "csr_matrix", "0.1.0");
    x.set_attr_array_numeric("shape", &[3i64, 4]).unwrap();
    x.new_dataset::<f32>()
        .shape([3])
        .create("data")
        .unwrap()
        .write_raw(&[5.0f32, 2.0, 7.0])
        .unwrap();
    x.new_dataset::<i32>()
        .shape([3])
        .create("indices")
        .unwrap()
        .write_raw(&[1i32, 0, 3])
        .unwrap();
    x.new_dataset::<i32>()
        .shape([4])
        .create("indptr")
        .unwrap()
        .write_raw(&[0i32, 1, 1, 3])
        .unwrap();

    let obs = root.create_group("obs").unwrap();
    mark(&obs, "dataframe", "0.2.0");
    obs.set_attr_string("_index", "_index").unwrap();
    obs.set_attr_string_array("column-order", &["plate", "depth"])
        .unwrap();
    obs.write_vlen_strings("_index", &["c0", "c1", "c2"])
        .unwrap();
    let plate = obs.create_group("plate").unwrap();
    mark(&plate, "categorical", "0.2.0");
    bool_attr(&plate, "ordered", true);
    plate
        .write_vlen_strings("categories", &["p1", "p2"])
        .unwrap();
    plate
        .new_dataset::<i8>()
        .shape([3])
        .create("codes")
        .unwrap()
        .write_raw(&[1i8, -1, 0])
        .unwrap();
    obs.new_dataset::<f64>()
        .shape([3])
        .create("depth")
        .unwrap()
        .write_raw(&[1.5f64, 2.5, 3.5])
        .unwrap();

    let var = root.create_group("var").unwrap();
    mark(&var, "dataframe", "0.2.0");
    var.set_attr_string("_index", "_index").unwrap();
    var.set_attr_array_numeric::<f64>("column-order", &[])
        .unwrap();
    var.write_vlen_strings("_index", &["g0", "g1", "g2", "g3"])
        .unwrap();
    file.close().unwrap();
}

fn open() -> (tempfile::TempDir, H5ad) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.h5ad");
    write(&path);
    let file = H5ad::open(&path).unwrap();
    (dir, file)
}

#[test]
fn the_matrix_reads_back() {
    let (_dir, file) = open();
    let x = file.matrix(&MatrixSelection::X).unwrap();
    assert_eq!(
        (x.shape(), x.encoding(), x.nnz()),
        ((3, 4), MatrixEncoding::Csr, 3)
    );
    assert_eq!(x.pointers(0..3).unwrap(), vec![0, 1, 1, 3]);
    assert_eq!(
        x.entries(0..3).unwrap(),
        (vec![1, 0, 3], vec![5.0, 2.0, 7.0])
    );
}

#[test]
fn the_dataframes_read_back() {
    let (_dir, file) = open();
    let obs = file.obs().unwrap();
    let batch = obs.read(0..3).unwrap();
    assert_eq!(plain_strings(&batch, "obs_name"), ["c0", "c1", "c2"]);
    assert_eq!(
        categories(&batch, "plate"),
        [Some("p2".to_string()), None, Some("p1".to_string())]
    );
    let depth = batch
        .column_by_name("depth")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(depth.values().to_vec(), [1.5, 2.5, 3.5]);
    let plate = &obs.categoricals()[0];
    assert_eq!(
        (plate.categories.clone(), plate.ordered),
        (vec!["p1".to_string(), "p2".into()], true)
    );
    let var = file.var(&MatrixSelection::X).unwrap().read(1..4).unwrap();
    assert_eq!(plain_strings(&var, "gene_id"), ["g1", "g2", "g3"]);
}
