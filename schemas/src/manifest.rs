use serde::{Deserialize, Serialize};

use crate::json::encode_pretty;
use crate::{DatasetName, IndexType, ValueType};

/// Written in every manifest so that a stray JSON file is never taken for a dataset.
pub const FORMAT_NAME: &str = "cellflight-dataset";
/// Bumped on any change a reader of the previous version would misread.
pub const FORMAT_VERSION: u32 = 1;

/// `manifest.json`: the description of one ingested dataset. It is written
/// last, so a directory without it is not a dataset. See `docs/format.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub name: DatasetName,
    /// Unique to each ingest; also stamped into every data file, so a reader
    /// can tell a replaced dataset and never mixes two versions.
    pub version: String,
    pub n_cells: u64,
    pub n_genes: u64,
    /// Stored (non-zero) entries of the matrix.
    pub nnz: u64,
    /// `None` for an obs-only dataset (metadata for SQL, nothing to stream).
    pub matrix: Option<MatrixLayout>,
    pub cells: TableLayout,
    pub genes: TableLayout,
    pub provenance: Provenance,
    /// Parts of the source that the dataset does not hold, e.g. `obsm/X_pca`.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixLayout {
    /// Arrow IPC file, relative to the dataset directory.
    pub file: String,
    pub index_type: IndexType,
    pub value_type: ValueType,
    /// Cells per record batch (every batch but the last holds exactly this many).
    pub cells_per_batch: u32,
    pub n_batches: u64,
}

impl MatrixLayout {
    fn check(&self, n_cells: u64, n_genes: u64) -> Result<(), ManifestError> {
        let inconsistent = |what: String| Err(ManifestError::Inconsistent(what));
        if self.cells_per_batch == 0 {
            return inconsistent("matrix.cells_per_batch is 0".into());
        }
        let expected_batches = n_cells.div_ceil(u64::from(self.cells_per_batch));
        if self.n_batches != expected_batches {
            return inconsistent(format!(
                "matrix has {} batches; {n_cells} cells at {} a batch need {expected_batches}",
                self.n_batches, self.cells_per_batch
            ));
        }
        if self.index_type != IndexType::for_gene_count(n_genes) {
            return inconsistent(format!(
                "index type {:?} does not match {n_genes} genes",
                self.index_type
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableLayout {
    /// Parquet file, relative to the dataset directory.
    pub file: String,
    pub n_rows: u64,
    /// Every categorical column with its full category list, in code order.
    pub categoricals: Vec<Categorical>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Categorical {
    pub column: String,
    /// All categories, used or not, so codes stay stable across cohorts.
    pub categories: Vec<String>,
    pub ordered: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The file ingested, or `generate` for a synthetic dataset.
    pub source: String,
    /// The matrix taken from the source: `X`, `raw/X` or `layers/NAME`.
    pub matrix: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `cellflight <version>`.
    pub tool: String,
    /// How the data was made when it was not ingested, e.g. the generator's seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a cellflight manifest: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a cellflight manifest: \"format\" is {0:?}, expected {FORMAT_NAME:?}")]
    WrongFormat(String),
    #[error("dataset format version {found} is not supported (this build reads version {FORMAT_VERSION}); re-ingest it with this cellflight")]
    UnsupportedVersion { found: u32 },
    #[error("inconsistent manifest: {0}")]
    Inconsistent(String),
}

impl Manifest {
    pub fn from_json(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self = serde_json::from_str(text)?;
        manifest.check()?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        encode_pretty(self)
    }

    /// The checks that need nothing but the manifest itself.
    fn check(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT_NAME {
            return Err(ManifestError::WrongFormat(self.format.clone()));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(ManifestError::UnsupportedVersion {
                found: self.format_version,
            });
        }
        let inconsistent = |what: String| Err(ManifestError::Inconsistent(what));
        if self.cells.n_rows != self.n_cells {
            return inconsistent(format!(
                "cells table has {} rows for {} cells",
                self.cells.n_rows, self.n_cells
            ));
        }
        if self.genes.n_rows != self.n_genes {
            return inconsistent(format!(
                "genes table has {} rows for {} genes",
                self.genes.n_rows, self.n_genes
            ));
        }
        match &self.matrix {
            Some(matrix) => matrix.check(self.n_cells, self.n_genes),
            None => Ok(()),
        }
    }

    /// The categorical column `column` of `cells`, if it is one.
    pub fn cell_categorical(&self, column: &str) -> Option<&Categorical> {
        self.cells.categoricals.iter().find(|c| c.column == column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Manifest {
        Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            name: "demo".parse().unwrap(),
            version: "20261125T083400Z-0123456789abcdef".into(),
            n_cells: 2500,
            n_genes: 100,
            nnz: 10_000,
            matrix: Some(MatrixLayout {
                file: "matrix.arrow".into(),
                index_type: IndexType::UInt16,
                value_type: ValueType::UInt16,
                cells_per_batch: 1024,
                n_batches: 3,
            }),
            cells: TableLayout {
                file: "cells.parquet".into(),
                n_rows: 2500,
                categoricals: vec![Categorical {
                    column: "plate".into(),
                    categories: vec!["plate1".into(), "plate2".into()],
                    ordered: false,
                }],
            },
            genes: TableLayout {
                file: "genes.parquet".into(),
                n_rows: 100,
                categoricals: vec![],
            },
            provenance: Provenance {
                source: "demo.h5ad".into(),
                matrix: "X".into(),
                created_at: "2026-11-25T08:34:00Z".into(),
                tool: "cellflight 0.1.0".into(),
                parameters: None,
            },
            skipped: vec!["obsm/X_pca".into()],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let manifest = example();
        assert_eq!(Manifest::from_json(&manifest.to_json()).unwrap(), manifest);
    }

    #[test]
    fn refuses_other_formats_and_versions() {
        let mut other = example();
        other.format = "something-else".into();
        let err = Manifest::from_json(&other.to_json()).unwrap_err();
        assert!(matches!(err, ManifestError::WrongFormat(_)), "{err}");

        let mut newer = example();
        newer.format_version = FORMAT_VERSION + 1;
        let err = Manifest::from_json(&newer.to_json()).unwrap_err();
        assert!(err.to_string().contains("not supported"), "{err}");
    }

    #[test]
    fn refuses_counts_that_disagree() {
        let mut manifest = example();
        manifest.matrix.as_mut().unwrap().n_batches = 2;
        let err = Manifest::from_json(&manifest.to_json()).unwrap_err();
        assert!(err.to_string().contains("need 3"), "{err}");

        let mut manifest = example();
        manifest.cells.n_rows = 1;
        assert!(Manifest::from_json(&manifest.to_json()).is_err());
    }

    #[test]
    fn an_obs_only_dataset_has_no_matrix() {
        let mut manifest = example();
        manifest.matrix = None;
        let json = manifest.to_json();
        assert!(json.contains("\"matrix\": null"), "{json}");
        assert_eq!(Manifest::from_json(&json).unwrap(), manifest);
    }

    #[test]
    fn refuses_unknown_keys_and_bad_names() {
        let text = example().to_json().replacen('{', "{\"extra\": 1,", 1);
        assert!(Manifest::from_json(&text).is_err());
        let text = example().to_json().replace("\"demo\"", "\"Demo\"");
        let err = Manifest::from_json(&text).unwrap_err();
        assert!(err.to_string().contains("invalid dataset name"), "{err}");
    }
}
