//! One module per subcommand; all errors meet in [`CommandError`].

mod generate;
mod ingest;
mod inspect;
mod serve;

use std::path::PathBuf;

use cellflight_generate::GenerateError;
use cellflight_ingest::IngestError;
use cellflight_store::StoreError;

use crate::cli::Subcommand;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: {count} fault(s) found", .dir.display())]
    Faulty { dir: PathBuf, count: usize },
    #[error("{0}")]
    Serve(String),
}

pub fn run(subcommand: Subcommand) -> Result<(), CommandError> {
    match subcommand {
        Subcommand::Serve(args) => serve::run(args),
        Subcommand::Ingest(args) => ingest::run(args),
        Subcommand::Generate(args) => generate::run(args),
        Subcommand::Inspect(args) => inspect::run(args),
    }
}

/// Cells per second and the like, for summaries.
fn rate(count: f64, elapsed: std::time::Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}
