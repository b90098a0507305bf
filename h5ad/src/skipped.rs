//! What the dataset will not hold, so the ingest report can say so. Mappings
//! (obsm, layers ...) are listed entry by entry, since each entry is a thing
//! a user may miss; anything else (uns, raw) is listed whole.

use rust_hdf5::H5File;

use crate::matrix::MatrixSelection;
use crate::tree::{children, join, node, Node};

/// Top-level groups whose entries are listed one by one.
const MAPPINGS: [&str; 5] = ["layers", "obsm", "obsp", "varm", "varp"];

pub(crate) fn list(file: &H5File, which: &MatrixSelection) -> Vec<String> {
    children(file, "")
        .into_iter()
        .flat_map(|name| skipped_under(file, which, &name))
        .collect()
}

/// The skipped paths under one top-level name.
fn skipped_under(file: &H5File, which: &MatrixSelection, name: &str) -> Vec<String> {
    match name {
        "obs" => Vec::new(),
        "X" => keep_unless(*which == MatrixSelection::X, file, name),
        // With --raw the genes are raw/var's; a layer shares var with X.
        "var" => keep_unless(*which != MatrixSelection::Raw, file, name),
        "raw" if *which == MatrixSelection::Raw => children(file, "raw")
            .into_iter()
            .filter(|child| child != "X" && child != "var")
            .map(|child| join("raw", &child))
            .filter(|path| !is_empty_group(file, path))
            .collect(),
        name if MAPPINGS.contains(&name) => children(file, name)
            .into_iter()
            .map(|child| join(name, &child))
            .filter(|path| Some(path.as_str()) != layer_path(which).as_deref())
            .filter(|path| !is_empty_group(file, path))
            .collect(),
        other => keep_unless(false, file, other),
    }
}

fn layer_path(which: &MatrixSelection) -> Option<String> {
    matches!(which, MatrixSelection::Layer(_)).then(|| which.path())
}

fn keep_unless(held: bool, file: &H5File, path: &str) -> Vec<String> {
    if held || is_empty_group(file, path) {
        Vec::new()
    } else {
        vec![path.to_string()]
    }
}

fn is_empty_group(file: &H5File, path: &str) -> bool {
    node(file, path) == Node::Group && children(file, path).is_empty()
}
