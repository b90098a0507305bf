//! `cellflight collection create`: a collection definition checked against
//! its members as a server opens it, then written atomically.

use std::collections::BTreeMap;
use std::sync::Arc;

use cellflight_schemas::{CollectionDefinition, DatasetName, Join, COLLECTION_SUFFIX};
use cellflight_store::{
    collection_files, write_definition, Collection, CollectionError, Dataset, MANIFEST_FILE,
};

use super::CommandError;
use crate::cli::{CollectionCommand, CollectionCreateArgs};

pub(super) fn run(command: CollectionCommand) -> Result<(), CommandError> {
    match command {
        CollectionCommand::Create(args) => create(args),
    }
}

fn create(args: CollectionCreateArgs) -> Result<(), CommandError> {
    let name: DatasetName = args.name.parse().map_err(invalid)?;
    let members = (args.members.iter())
        .map(|m| m.parse::<DatasetName>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    let join = match args.join.as_str() {
        "inner" => Join::Inner,
        _ => Join::Outer,
    };
    let definition = CollectionDefinition::new(members, args.gene_key, join)
        .map_err(|e| CommandError::Usage(e.to_string()))?;
    let path = args.data.join(format!("{name}{COLLECTION_SUFFIX}"));
    if path.exists() && !args.force {
        return Err(CommandError::Usage(format!(
            "{}: the collection already exists; pass --force to replace it",
            path.display()
        )));
    }
    if args.data.join(name.as_str()).join(MANIFEST_FILE).exists() {
        return Err(CollectionError::NameTaken(name.to_string()).into());
    }
    let collection = open(&args.data, name.clone(), &path, definition.clone())?;
    let written = write_definition(&args.data, &name, &definition)?;
    println!(
        "{}: collection {name} of {} cells and {} genes ({} join on {}), version {}",
        written.display(),
        collection.n_cells(),
        collection.n_genes(),
        args.join,
        definition.gene_key,
        collection.version()
    );
    Ok(())
}

/// Collection `name` of the data directory `data`, defined by
/// `definition` (from `path`), checked against its members as a server
/// opens it.
pub(super) fn open(
    data: &std::path::Path,
    name: DatasetName,
    path: &std::path::Path,
    definition: CollectionDefinition,
) -> Result<Collection, CommandError> {
    let collections: Vec<DatasetName> = collection_files(data)?
        .into_iter()
        .flatten()
        .map(|(name, _)| name)
        .collect();
    let members = open_members(data, &definition)?;
    Ok(Collection::open(
        name,
        path,
        definition,
        &members,
        &collections,
    )?)
}

/// The members found in `data`, by name; a member not found is left out,
/// for `Collection::open` to name.
fn open_members(
    data: &std::path::Path,
    definition: &CollectionDefinition,
) -> Result<BTreeMap<String, Arc<Dataset>>, CommandError> {
    let mut members = BTreeMap::new();
    for member in &definition.members {
        let dir = data.join(member.as_str());
        if dir.join(MANIFEST_FILE).exists() {
            members.insert(member.to_string(), Arc::new(Dataset::open(&dir)?));
        }
    }
    Ok(members)
}

fn invalid(error: cellflight_schemas::InvalidDatasetName) -> CommandError {
    CommandError::Usage(error.to_string())
}
