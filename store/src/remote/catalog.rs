//! The datasets published under an object store prefix, opened for
//! serving: each version's two Parquet tables copied once to the local
//! cache (SQL scans them whole, and they are small beside the matrix), its
//! matrix read by ranged reads through the block cache. The copies of
//! versions no longer served are removed (`retain_table_copies`), so a
//! server's disk does not grow with every version published while it runs.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cellflight_schemas::Manifest;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStoreExt;

use super::block_cache::BlockCache;
use super::io;
use super::location::RemoteStore;
use super::matrix::RemoteMatrix;
use super::object::{ReadCounters, RemoteObject};
use super::{check_version, VERSIONS_DIR};
use crate::{Dataset, StoreError, CELLS_FILE, GENES_FILE, MANIFEST_FILE};

/// Where a server keeps what it copies from the store, and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteCatalogConfig {
    /// Holds `tables/NAME/VERSION/` (the Parquet copies) and `blocks/`.
    pub cache_dir: PathBuf,
    /// Bound of the block cache (the copied tables are not counted: they
    /// are the versions being served, and only those are kept).
    pub cache_bytes: u64,
}

/// Counters of a server's reads from an object store, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RemoteReadStats {
    /// Ranged GETs of matrix blocks.
    pub gets: u64,
    pub bytes_fetched: u64,
    pub blocks_from_cache: u64,
    pub cache_bytes: u64,
    pub cache_capacity: u64,
    /// Cached blocks found damaged, dropped and fetched again.
    pub blocks_rejected: u64,
}

#[derive(Debug)]
pub struct RemoteCatalog {
    remote: RemoteStore,
    tables: PathBuf,
    /// Held from copying a version's tables to opening them, and while
    /// copies are removed: a copy is never removed in between.
    copying: Mutex<()>,
    blocks: Arc<BlockCache>,
    counters: Arc<ReadCounters>,
}

impl RemoteCatalog {
    pub fn open(remote: RemoteStore, config: &RemoteCatalogConfig) -> Result<Self, StoreError> {
        let blocks_dir = config.cache_dir.join("blocks");
        let blocks = BlockCache::open(&blocks_dir, config.cache_bytes)
            .map_err(StoreError::io(&blocks_dir))?;
        // Copies left by an earlier run: no dataset has them open.
        let tables = config.cache_dir.join("tables");
        remove_dir(&tables)?;
        Ok(Self {
            remote,
            tables,
            copying: Mutex::default(),
            blocks: Arc::new(blocks),
            counters: Arc::default(),
        })
    }

    pub fn remote(&self) -> &RemoteStore {
        &self.remote
    }

    pub fn block_cache(&self) -> &BlockCache {
        &self.blocks
    }

    /// What reading from the store has cost since the server started.
    pub fn stats(&self) -> RemoteReadStats {
        let count = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        RemoteReadStats {
            gets: count(&self.counters.gets),
            bytes_fetched: count(&self.counters.bytes_fetched),
            blocks_from_cache: count(&self.counters.blocks_from_cache),
            cache_bytes: self.blocks.bytes(),
            cache_capacity: self.blocks.capacity(),
            blocks_rejected: self.blocks.rejected(),
        }
    }

    /// The names under the prefix (each may or may not hold a dataset).
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let (store, prefix, url) = (
            self.remote.store().clone(),
            self.remote.prefix().clone(),
            self.remote.url().to_owned(),
        );
        let listed = io::wait(async move {
            store
                .list_with_delimiter(Some(&prefix))
                .await
                .map_err(StoreError::remote(&url))
        })?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The current version of dataset `name`: the one its
    /// `NAME/manifest.json` names.
    pub fn open_current(&self, name: &str) -> Result<Dataset, StoreError> {
        let manifest = self.manifest(&self.remote.path([name, MANIFEST_FILE]))?;
        self.open_version(name, &manifest.version)
    }

    /// Version `version` of dataset `name`, while its files exist.
    pub fn open_version(&self, name: &str, version: &str) -> Result<Dataset, StoreError> {
        check_version(name, version)?;
        let files = |file: &str| self.remote.path([name, VERSIONS_DIR, version, file]);
        let manifest = match self.manifest(&files(MANIFEST_FILE)) {
            Err(e) if e.is_not_found() => {
                return Err(StoreError::UnknownVersion {
                    dataset: name.to_owned(),
                    version: version.to_owned(),
                })
            }
            other => other?,
        };
        if manifest.name.as_str() != name || manifest.version != version {
            return Err(StoreError::Corrupt {
                file: self.remote.url_of(&files(MANIFEST_FILE)),
                reason: format!(
                    "describes {} version {}, not {name} version {version}",
                    manifest.name.as_str(),
                    manifest.version
                ),
            });
        }
        let copying = self.copying.lock().unwrap_or_else(|e| e.into_inner());
        let copy = self.copy_tables(name, &manifest, &files)?;
        let matrix = match &manifest.matrix {
            None => None,
            Some(layout) => {
                let object = RemoteObject::open(
                    &self.remote,
                    files(&layout.file),
                    Some(self.blocks.clone()),
                    self.counters.clone(),
                )?;
                let matrix =
                    RemoteMatrix::open(object, version, layout.cells_per_batch, manifest.n_cells)?;
                Some(Arc::new(matrix))
            }
        };
        let dataset = Dataset::open_copy(&copy, matrix);
        drop(copying);
        dataset
    }

    /// Removes the table copies of every version but the `served` ones
    /// (manifests of the versions a server holds open: current and
    /// pinned). Datasets still open on a removed copy keep reading it (they
    /// hold its files open); a version asked for again is copied again.
    pub fn retain_table_copies<'a>(
        &self,
        served: impl IntoIterator<Item = &'a Manifest>,
    ) -> Result<(), StoreError> {
        let served: HashSet<(&str, &str)> = served
            .into_iter()
            .map(|m| (m.name.as_str(), m.version.as_str()))
            .collect();
        let _copying = self.copying.lock().unwrap_or_else(|e| e.into_inner());
        for (name, name_dir) in subdirectories(&self.tables)? {
            for (version, copy) in subdirectories(&name_dir)? {
                if !served.contains(&(name.as_str(), version.as_str())) {
                    remove_dir(&copy)?;
                }
            }
        }
        Ok(())
    }

    fn manifest(&self, path: &ObjectPath) -> Result<Manifest, StoreError> {
        let bytes = self.get(path)?;
        let url = self.remote.url_of(path);
        let text = std::str::from_utf8(&bytes).map_err(|e| StoreError::Corrupt {
            file: url.clone(),
            reason: e.to_string(),
        })?;
        Manifest::from_json(text).map_err(|source| StoreError::Manifest {
            path: url.into(),
            source,
        })
    }

    fn get(&self, path: &ObjectPath) -> Result<bytes::Bytes, StoreError> {
        let (store, path, url) = (
            self.remote.store().clone(),
            path.clone(),
            self.remote.url_of(path),
        );
        io::wait(async move {
            let got = store.get(&path).await.map_err(StoreError::remote(&url))?;
            got.bytes().await.map_err(StoreError::remote(&url))
        })
    }

    /// The local copy of the version's manifest and tables: made once
    /// (in a hidden directory, renamed into place when whole), then reused.
    fn copy_tables(
        &self,
        name: &str,
        manifest: &Manifest,
        files: &dyn Fn(&str) -> ObjectPath,
    ) -> Result<PathBuf, StoreError> {
        let copy = self.tables.join(name).join(&manifest.version);
        if copy.join(MANIFEST_FILE).exists() {
            return Ok(copy);
        }
        let parent = self.tables.join(name);
        std::fs::create_dir_all(&parent).map_err(StoreError::io(&parent))?;
        let partial = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(&parent)
            .map_err(StoreError::io(&parent))?;
        for (file, local) in [
            (&manifest.cells.file, CELLS_FILE),
            (&manifest.genes.file, GENES_FILE),
            (&MANIFEST_FILE.to_owned(), MANIFEST_FILE),
        ] {
            let bytes = self.get(&files(file))?;
            let path = partial.path().join(local);
            std::fs::write(&path, &bytes).map_err(StoreError::io(&path))?;
        }
        let made = partial.keep();
        if let Err(error) = std::fs::rename(&made, &copy) {
            let _ = std::fs::remove_dir_all(&made);
            if !copy.join(MANIFEST_FILE).exists() {
                return Err(StoreError::Io {
                    path: copy,
                    source: error,
                });
            }
        }
        Ok(copy)
    }
}

/// The directories in `dir` (none when it does not exist), with their names.
fn subdirectories(dir: &Path) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(StoreError::io(dir))?,
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io(dir))?;
        if entry.file_type().map_err(StoreError::io(dir))?.is_dir() {
            found.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    Ok(found)
}

fn remove_dir(dir: &Path) -> Result<(), StoreError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(StoreError::io(dir)),
    }
}
