//! `cellflight ingest`: an AnnData `.h5ad` file in, a cellflight dataset out,
//! in memory bounded by a budget whatever the file's size.
//!
//! The matrix is read twice: a pre-pass over the values picks the narrowest
//! exact value type, then the rows stream to the store writer together with
//! their obs rows. CSR and dense matrices stream in row chunks; CSC is first
//! transposed through row-bucket spill files.

mod budget;
mod csc;
mod error;
mod overlap;
mod pipeline;
mod rows;
mod value_scan;

pub use budget::MemoryBudget;
pub use cellflight_h5ad::MatrixSelection;
pub use error::IngestError;
pub use pipeline::{ingest, IngestOptions, IngestSummary};
