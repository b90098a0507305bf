//! The datasets a server holds: a directory that is a dataset, or a
//! directory of them (hidden names, such as ingests in progress, skipped)
//! and of collections of them (`NAME.collection.json`).
//! Requests work on a snapshot; `refresh` swaps in a new one, and requests
//! already running keep theirs (it holds their files open).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use cellflight_sql::CatalogSnapshot;
use cellflight_store::{open_collections, Collection, Dataset, Served, StoreError, MANIFEST_FILE};

use crate::error::EngineError;

#[derive(Debug)]
pub(crate) struct ServedDatasets {
    data: PathBuf,
    default_dataset: Option<String>,
    current: RwLock<Arc<CatalogSnapshot>>,
}

impl ServedDatasets {
    /// The datasets under `data`. The default dataset (reachable without a
    /// name, and unqualified in SQL) is `default_dataset`, or else the only
    /// dataset found now, if there is exactly one.
    pub(crate) fn load(data: &Path, default_dataset: Option<&str>) -> Result<Self, EngineError> {
        let Opened {
            datasets,
            collections,
        } = open_catalog(data)?;
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
            data: data.to_owned(),
            default_dataset,
            current: RwLock::new(snapshot),
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
        } = open_catalog(&self.data)?;
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
        Ok(snapshot)
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
