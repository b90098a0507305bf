//! The `app_metadata` of each `ListFlights` entry, one a dataset
//! (docs/protocol.md). Python clients read the same keys.

use serde::{Deserialize, Serialize};

use crate::json::{decode, encode};
use crate::RequestError;

/// A listed dataset's version and size. Unknown keys are ignored, not
/// refused: a newer server may add keys an older client never reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetMetadata {
    /// The version a plan of this dataset would be made on.
    pub version: String,
    pub n_cells: u64,
    pub n_genes: u64,
    /// Stored (non-zero) entries of the expression matrix.
    pub nnz: u64,
}

impl DatasetMetadata {
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        decode("dataset metadata", bytes)
    }

    pub fn to_json(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset() -> DatasetMetadata {
        DatasetMetadata {
            version: "v1".into(),
            n_cells: 1000,
            n_genes: 60,
            nnz: 4200,
        }
    }

    #[test]
    fn a_dataset_metadata_round_trips_with_the_keys_python_reads() {
        let json = dataset().to_json();
        assert_eq!(
            json,
            r#"{"version":"v1","n_cells":1000,"n_genes":60,"nnz":4200}"#
        );
        assert_eq!(
            DatasetMetadata::from_json(json.as_bytes()).unwrap(),
            dataset()
        );
    }

    #[test]
    fn unknown_keys_of_a_newer_server_are_ignored() {
        let json = br#"{"version":"v1","n_cells":1000,"n_genes":60,"nnz":4200,"bytes":1}"#;
        assert_eq!(DatasetMetadata::from_json(json).unwrap(), dataset());
    }

    #[test]
    fn a_dataset_metadata_missing_nnz_is_refused_naming_the_key() {
        let json = br#"{"version":"v1","n_cells":1000,"n_genes":60}"#;
        let error = DatasetMetadata::from_json(json).unwrap_err().to_string();
        assert!(error.starts_with("invalid dataset metadata"), "{error}");
        assert!(error.contains("`nnz`"), "{error}");
    }
}
