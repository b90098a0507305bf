//! The datasets a server holds: a directory that is a dataset, or a
//! directory of them (hidden names, such as ingests in progress, skipped)
//! and of collections of them (`NAME.collection.json`); or the datasets
//! published under an object store prefix.
//! Requests work on a snapshot; `refresh` swaps in a new one, and requests
//! already running keep theirs (it holds their files open).

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use cellflight_sql::CatalogSnapshot;
use cellflight_store::{
    open_collections, Collection, DataLocation, Dataset, RemoteCatalog, RemoteReadStats, Served,
    StoreError, MANIFEST_FILE,
};

use crate::config::EngineConfig;
use crate::error::EngineError;

/// Versions other than the current ones kept open for tickets that name
/// them (from an object store), most recently used first.
const PINNED_VERSIONS: usize = 8;

#[derive(Debug)]
pub(crate) struct ServedDatasets {
    source: Source,
    default_dataset: Option<String>,
    current: RwLock<Arc<CatalogSnapshot>>,
    pinned: Mutex<Vec<Arc<Dataset>>>,
}

/// Where the datasets come from.
#[derive(Debug)]
enum Source {
    Local(std::path::PathBuf),
    Remote(RemoteCatalog),
}

impl ServedDatasets {
    /// The datasets of `config.data`. The default dataset (reachable
    /// without a name, and unqualified in SQL) is `default_dataset`, or
    /// else the only dataset found now, if there is exactly one.
    pub(crate) fn load(config: &EngineConfig) -> Result<Self, EngineError> {
        let source = match &config.data {
            DataLocation::Local(dir) => Source::Local(dir.clone()),
            DataLocation::Remote(remote) => {
                Source::Remote(RemoteCatalog::open(remote.clone(), &config.remote_cache)?)
            }
        };
        let Opened {
            datasets,
            collections,
        } = source.open()?;
        let default_dataset = config.default_dataset.as_deref();
        let default_dataset = match default_dataset {
            Some(name) => Some(name.to_string()),
            None if datasets.len() == 1 && collections.is_empty() => {
                Some(datasets[0].manifest().name.to_string())
            }
            None => None,
        };
        let snapshot =
            CatalogSnapshot::with_collections(datasets, collections, default_dataset.as_deref())?;
        Ok(Self {
            source,
            default_dataset,
            current: RwLock::new(snapshot),
            pinned: Mutex::default(),
        })
    }

    pub(crate) fn snapshot(&self) -> Arc<CatalogSnapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Reopens the data directory: new and replaced datasets and
    /// collections appear, removed ones go. Datasets being written are
    /// never seen (they are published by an atomic rename, and hidden
    /// until then), nor are collection files being written.
    pub(crate) fn refresh(&self) -> Result<Arc<CatalogSnapshot>, EngineError> {
        let Opened {
            datasets,
            collections,
        } = self.source.open()?;
        let default = self.default_dataset.as_deref().filter(|name| {
            datasets.iter().any(|d| d.manifest().name.as_str() == *name)
                || collections.iter().any(|c| c.name().as_str() == *name)
        });
        if default.is_none() {
            if let Some(name) = &self.default_dataset {
                tracing::warn!(dataset = %name, "the default dataset is no longer served");
            }
        }
        let snapshot = CatalogSnapshot::with_collections(datasets, collections, default)?;
        tracing::info!(?snapshot, "catalog refreshed");
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&snapshot);
        self.retain_table_copies();
        Ok(snapshot)
    }

    /// A catalog of version `version` of dataset `name` alone, when the
    /// datasets come from an object store and that version's files are
    /// still there; `None` for local datasets, which hold one version.
    pub(crate) fn version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Arc<CatalogSnapshot>>, EngineError> {
        let Source::Remote(catalog) = &self.source else {
            return Ok(None);
        };
        let dataset = match self.pinned_version(name, version) {
            Some(dataset) => dataset,
            None => {
                let dataset = match catalog.open_version(name, version) {
                    Err(error) if error.is_not_found() => return Ok(None),
                    other => Arc::new(other?),
                };
                self.pin(dataset.clone());
                self.retain_table_copies();
                dataset
            }
        };
        Ok(Some(CatalogSnapshot::new(vec![dataset], Some(name))?))
    }

    /// What reading from the object store has cost, when there is one.
    pub(crate) fn remote_reads(&self) -> Option<RemoteReadStats> {
        match &self.source {
            Source::Local(_) => None,
            Source::Remote(catalog) => Some(catalog.stats()),
        }
    }

    fn pinned_version(&self, name: &str, version: &str) -> Option<Arc<Dataset>> {
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        let at = pinned
            .iter()
            .position(|d| d.manifest().name.as_str() == name && d.manifest().version == version)?;
        let dataset = pinned.remove(at);
        pinned.insert(0, dataset.clone());
        Some(dataset)
    }

    fn pin(&self, dataset: Arc<Dataset>) {
        let mut pinned = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        pinned.insert(0, dataset);
        pinned.truncate(PINNED_VERSIONS);
    }

    /// Removes the local copies of the versions neither current nor pinned
    /// (from an object store). Failing to is no reason to fail a request:
    /// it is said, and tried again at the next refresh or pin.
    fn retain_table_copies(&self) {
        let Source::Remote(catalog) = &self.source else {
            return;
        };
        let snapshot = self.snapshot();
        let pinned = self
            .pinned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let current = snapshot.datasets().filter_map(|served| match served {
            Served::Dataset(dataset) => Some(dataset.manifest()),
            Served::Collection(_) => None,
        });
        let served = current.chain(pinned.iter().map(|dataset| dataset.manifest()));
        if let Err(error) = catalog.retain_table_copies(served) {
            tracing::warn!("removing table copies of versions no longer served: {error}");
        }
    }
}

/// The dataset or collection `name` in `snapshot`, or, when none is
/// named, the default dataset.
pub(crate) fn resolve(
    snapshot: &CatalogSnapshot,
    name: Option<&str>,
) -> Result<Served, EngineError> {
    let Some(name) = name.or(snapshot.default_dataset()) else {
        return Err(EngineError::NoDefaultDataset {
            datasets: snapshot.datasets().count(),
        });
    };
    Ok(snapshot.dataset(name)?.clone())
}

/// What a data directory serves.
struct Opened {
    datasets: Vec<Arc<Dataset>>,
    collections: Vec<Arc<Collection>>,
}

impl Source {
    fn open(&self) -> Result<Opened, StoreError> {
        match self {
            Self::Local(dir) => open_catalog(dir),
            Self::Remote(catalog) => open_remote(catalog),
        }
    }
}

/// The current version of every dataset published under the prefix (each
/// one that cannot be opened is skipped, saying why; a store that cannot
/// be listed fails). Collections are local only.
fn open_remote(catalog: &RemoteCatalog) -> Result<Opened, StoreError> {
    let mut datasets = Vec::new();
    for name in catalog.names()? {
        match catalog.open_current(&name) {
            Ok(dataset) => datasets.push(Arc::new(dataset)),
            Err(e) => tracing::warn!("skipping {}/{name}: {e}", catalog.remote().url()),
        }
    }
    Ok(Opened {
        datasets,
        collections: Vec::new(),
    })
}

/// The datasets of `data`, and the collections of them it defines (each
/// one that cannot be served is skipped, saying why).
fn open_catalog(data: &Path) -> Result<Opened, StoreError> {
    let datasets = open_datasets(data)?;
    if data.join(MANIFEST_FILE).exists() {
        return Ok(Opened {
            datasets,
            collections: Vec::new(),
        });
    }
    let (collections, refused) = open_collections(data, &datasets);
    for error in refused {
        tracing::warn!("skipping a collection: {error}");
    }
    Ok(Opened {
        datasets,
        collections,
    })
}

fn open_datasets(data: &Path) -> Result<Vec<Arc<Dataset>>, StoreError> {
    if data.join(MANIFEST_FILE).exists() {
        return Ok(vec![Arc::new(Dataset::open(data)?)]);
    }
    let entries = std::fs::read_dir(data).map_err(|source| StoreError::Io {
        path: data.to_owned(),
        source,
    })?;
    let mut datasets = Vec::new();
    for entry in entries.flatten() {
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        if hidden || !entry.path().is_dir() {
            continue;
        }
        match Dataset::open(&entry.path()) {
            Ok(dataset) => datasets.push(Arc::new(dataset)),
            Err(e) => tracing::warn!("skipping {}: {e}", entry.path().display()),
        }
    }
    Ok(datasets)
}
