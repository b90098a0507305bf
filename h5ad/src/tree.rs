//! What is at a path in the file, and what a group holds.

use rust_hdf5::H5File;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    Group,
    Dataset,
    Absent,
}

pub(crate) fn node(file: &H5File, path: &str) -> Node {
    if file.dataset(path).is_ok() {
        Node::Dataset
    } else if file.root_group().group(path).is_ok() {
        Node::Group
    } else {
        Node::Absent
    }
}

/// The names a group links to, in name order; empty for anything else. The
/// root is "".
pub(crate) fn children(file: &H5File, path: &str) -> Vec<String> {
    let root = file.root_group();
    let names = if path.is_empty() {
        root.link_names()
    } else {
        root.group(path).and_then(|group| group.link_names())
    };
    names.unwrap_or_default()
}

/// "obs" + "cell_type" = "obs/cell_type"; "" + "X" = "X".
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}
