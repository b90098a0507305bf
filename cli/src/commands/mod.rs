//! One module per subcommand; all errors meet in [`CommandError`].

mod collection;
mod generate;
mod hash_password;
mod ingest;
mod inspect;
mod output;
mod prune;
mod serve;

use std::path::PathBuf;

use cellflight_flight::PasswordError;
use cellflight_generate::GenerateError;
use cellflight_ingest::IngestError;
use cellflight_store::{CollectionError, StoreError};

use crate::cli::Subcommand;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Generate(#[from] GenerateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error("{}: {count} fault(s) found", .dir.display())]
    Faulty { dir: PathBuf, count: usize },
    #[error("{0}")]
    Serve(String),
    /// Arguments that break a rule the command checks itself.
    #[error("{0}")]
    Usage(String),
    #[error("hash-password: {0}")]
    Password(#[from] PasswordError),
    #[error("hash-password: cannot read the password from stdin: {0}")]
    Stdin(std::io::Error),
}

pub fn run(subcommand: Subcommand) -> Result<(), CommandError> {
    match subcommand {
        Subcommand::Serve(args) => serve::run(args),
        Subcommand::Ingest(args) => ingest::run(args),
        Subcommand::Generate(args) => generate::run(args),
        Subcommand::Inspect(args) => inspect::run(args),
        Subcommand::Prune(args) => prune::run(args),
        Subcommand::HashPassword => hash_password::run(),
        Subcommand::Collection(command) => collection::run(command),
    }
}

/// Cells per second and the like, for summaries.
fn rate(count: f64, elapsed: std::time::Duration) -> f64 {
    count / elapsed.as_secs_f64().max(1e-9)
}
