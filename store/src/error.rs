use std::io;
use std::path::{Path, PathBuf};

use arrow_schema::ArrowError;
use cellflight_schemas::{InvalidDatasetName, ManifestError};
use parquet::errors::ParquetError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    InvalidName(#[from] InvalidDatasetName),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: the dataset already exists; pass --force to replace it", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{}: not a cellflight dataset (no {}); it may still be being written", .0.display(), crate::MANIFEST_FILE)]
    NotADataset(PathBuf),
    #[error("{path}: {source}")]
    Manifest {
        path: PathBuf,
        source: ManifestError,
    },
    #[error("{path}: {source}")]
    Arrow { path: PathBuf, source: ArrowError },
    #[error("{path}: {source}")]
    Parquet { path: PathBuf, source: ParquetError },
    #[error("{}: belongs to dataset version {found}, but the manifest says {manifest}: the dataset is damaged (files of two versions)", .file.display())]
    VersionMismatch {
        file: PathBuf,
        manifest: String,
        found: String,
    },
    #[error("{}: the dataset was replaced while it was being opened, again and again; try again", .0.display())]
    KeptChanging(PathBuf),
    /// A client asked for a column the table does not have.
    #[error("{table} has no column {column:?}; its columns are {columns:?}")]
    UnknownColumn {
        table: &'static str,
        column: String,
        columns: Vec<String>,
    },
    /// The matrix file shrank under the server (truncated by another
    /// process) while it was being read: what was read is lost.
    #[error("{}: the file was truncated while it was being read; restore or re-ingest the dataset, then refresh", .0.display())]
    Truncated(PathBuf),
    /// `serve --data` or an output that is neither a path nor a usable URL.
    #[error("{location}: {reason}")]
    BadLocation { location: String, reason: String },
    /// An object store refused or failed a request about `url`.
    #[error("{url}: {source}")]
    Remote {
        url: String,
        source: object_store::Error,
    },
    /// A remote file is not what its manifest promises.
    #[error("{file}: {reason}")]
    Corrupt { file: String, reason: String },
    /// A ticket or command named a version no store holds.
    #[error("{dataset}: no version {version} is published (it may have been removed)")]
    UnknownVersion { dataset: String, version: String },
    #[error("{task}: {reason}")]
    TaskFailed { task: &'static str, reason: String },
    /// The caller broke the writer's contract (a bug upstream, or bad input it did not check).
    #[error("cannot write the dataset: {0}")]
    InvalidInput(String),
}

impl StoreError {
    /// Whether the named thing does not exist (a dataset, version or object).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::UnknownVersion { .. }
                | Self::Remote {
                    source: object_store::Error::NotFound { .. },
                    ..
                }
        )
    }

    /// Whether the store could not be reached or failed transiently: the
    /// request may succeed later, or on another replica.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Remote { source, .. } if !matches!(
            source,
            object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ))
    }

    pub(crate) fn remote(url: &str) -> impl FnOnce(object_store::Error) -> Self + '_ {
        move |source| Self::Remote {
            url: url.to_owned(),
            source,
        }
    }

    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn arrow(path: &Path) -> impl FnOnce(ArrowError) -> Self + '_ {
        move |source| Self::Arrow {
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn parquet(path: &Path) -> impl FnOnce(ParquetError) -> Self + '_ {
        move |source| Self::Parquet {
            path: path.to_owned(),
            source,
        }
    }
}
