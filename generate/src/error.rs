use std::io;
use std::path::PathBuf;

use arrow_schema::ArrowError;
use cellflight_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("--cells must be at least 1")]
    NoCells,
    #[error("--genes must be between 1 and {max} (got {0})", max = u32::MAX)]
    GeneCount(u64),
    #[error("--h5ad cannot be combined with --obs-only: an .h5ad needs the expression matrix")]
    H5adWithObsOnly,
    #[error("{}: the file already exists; pass --force to replace it", .0.display())]
    H5adExists(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Hdf5 {
        path: PathBuf,
        source: rust_hdf5::Hdf5Error,
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// Building an obs batch failed: a bug, as the generator makes its schema.
    #[error("cannot build the obs table: {0}")]
    Arrow(#[from] ArrowError),
    /// The thread making cells stopped (it panicked) before the last cell.
    #[error("cell generation stopped before the last cell")]
    Interrupted,
}
