//! Collection definition files in a data directory: found, read within
//! their size bound, and written atomically.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use cellflight_schemas::{
    CollectionDefinition, DatasetName, COLLECTION_SUFFIX, MAX_COLLECTION_FILE_BYTES,
};

use super::error::CollectionError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CollectionError + '_ {
    move |source| CollectionError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A collection file found: the collection's name and the file's path,
/// or why its name is not one.
pub type CollectionFile = Result<(DatasetName, PathBuf), CollectionError>;

/// The collection files of data directory `dir`; hidden files (a
/// definition being written) skipped.
pub fn collection_files(dir: &Path) -> Result<Vec<CollectionFile>, CollectionError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_suffix(COLLECTION_SUFFIX) else {
            continue;
        };
        if file_name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        found.push(match name.parse::<DatasetName>() {
            Ok(name) => Ok((name, path)),
            Err(source) => Err(CollectionError::InvalidName { path, source }),
        });
    }
    Ok(found)
}

/// The definition in `path`, refused unread if it is larger than
/// [`MAX_COLLECTION_FILE_BYTES`].
pub fn read_definition(path: &Path) -> Result<CollectionDefinition, CollectionError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let mut text = String::new();
    // One byte past the bound tells a file over it without reading more.
    file.take(MAX_COLLECTION_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(io(path))?;
    if text.len() as u64 > MAX_COLLECTION_FILE_BYTES {
        return Err(CollectionError::TooLarge(path.to_owned()));
    }
    CollectionDefinition::from_json(&text).map_err(|source| CollectionError::Definition {
        path: path.to_owned(),
        source,
    })
}

/// Writes `definition` as `dir/NAME.collection.json`: to a hidden file
/// first, synced, then renamed over any old one, so a server reading the
/// directory sees the old definition or the new, never part of one.
pub fn write_definition(
    dir: &Path,
    name: &DatasetName,
    definition: &CollectionDefinition,
) -> Result<PathBuf, CollectionError> {
    let path = dir.join(format!("{name}{COLLECTION_SUFFIX}"));
    let partial = dir.join(format!(
        ".{name}{COLLECTION_SUFFIX}.partial-{}",
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&partial)?;
        file.write_all(definition.to_json().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = std::fs::remove_file(&partial);
        CollectionError::Io {
            path: path.clone(),
            source,
        }
    })?;
    Ok(path)
}
