//! `cellflight prune`: removes the versions of a dataset in an object store
//! that nobody should still be reading.

use std::time::SystemTime;

use cellflight_store::{prune, DataLocation};

use super::CommandError;
use crate::cli::PruneArgs;

pub(super) fn run(args: PruneArgs) -> Result<(), CommandError> {
    let DataLocation::Remote(remote) = DataLocation::parse(&args.dataset)? else {
        return Err(CommandError::Usage(format!(
            "{}: a local dataset holds one version; prune names an object store dataset (s3://bucket/prefix/NAME)",
            args.dataset
        )));
    };
    let (parent, name) = remote.split_dataset().ok_or_else(|| {
        CommandError::Usage(format!(
            "{}: name a dataset, e.g. {}/NAME",
            args.dataset,
            remote.url()
        ))
    })?;
    let outcome = prune(&parent, &name, *args.keep_for, SystemTime::now())?;
    for version in &outcome.removed {
        println!("removed  {}/v/{version}", args.dataset);
    }
    for version in &outcome.kept {
        println!("kept     {}/v/{version}", args.dataset);
    }
    Ok(())
}
