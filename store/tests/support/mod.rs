//! What the tests that write datasets share. Included by `#[path]` from
//! each test crate that needs it (the store's and the SQL layer's), so
//! that no crate's library carries test code.

use cellflight_schemas::Categorical;
use cellflight_store::{DatasetDescription, Origin};

/// The description of a dataset a test wrote: from source `test`, its
/// matrix `X`, with `cell_categoricals` and nothing skipped.
pub(crate) fn test_description(cell_categoricals: Vec<Categorical>) -> DatasetDescription {
    DatasetDescription {
        cell_categoricals,
        gene_categoricals: vec![],
        origin: Origin {
            source: "test".into(),
            matrix: "X".into(),
            parameters: None,
        },
        skipped: vec![],
    }
}
