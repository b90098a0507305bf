//! The cellflight contract, shared by every crate: what a dataset on disk
//! looks like (its name rules, its manifest, the Arrow schema of its
//! expression matrix). Nothing here does I/O.

mod dataset_name;
mod dtype;
mod manifest;
mod matrix_schema;

pub use dataset_name::{DatasetName, InvalidDatasetName};
pub use dtype::{IndexType, ValueType, ValueTypeScan};
pub use manifest::{
    Categorical, Manifest, ManifestError, MatrixLayout, Provenance, TableLayout, FORMAT_NAME,
    FORMAT_VERSION,
};
pub use matrix_schema::{matrix_schema, INDICES_COLUMN, VALUES_COLUMN};
