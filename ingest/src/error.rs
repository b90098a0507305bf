use std::path::PathBuf;

use cellflight_h5ad::H5adError;
use cellflight_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    H5ad(#[from] H5adError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "{file}: {object}: cell {cell} has gene index {gene}, but the matrix has {n_genes} genes"
    )]
    IndexOutOfRange {
        file: PathBuf,
        object: String,
        cell: u64,
        gene: u64,
        n_genes: u64,
    },
    #[error(
        "{file}: {object}: gene {gene} has cell index {cell}, but the matrix has {n_cells} cells"
    )]
    CellIndexOutOfRange {
        file: PathBuf,
        object: String,
        gene: u64,
        cell: u64,
        n_cells: u64,
    },
    #[error("{file}: {object}: cell {cell} stores gene {gene} twice")]
    DuplicateEntry {
        file: PathBuf,
        object: String,
        cell: u64,
        gene: u32,
    },
    #[error("{file}: {object}: has {found} rows, the matrix has {expected} cells")]
    ObsMismatch {
        file: PathBuf,
        object: String,
        found: u64,
        expected: u64,
    },
    #[error("{file}: {object}: has {found} rows, the matrix has {expected} genes")]
    VarMismatch {
        file: PathBuf,
        object: String,
        found: u64,
        expected: u64,
    },
    #[error("spill file {path}: {source}")]
    Spill {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--memory {given} bytes is too small: at least {minimum} bytes are needed")]
    BudgetTooSmall { given: u64, minimum: u64 },
}
