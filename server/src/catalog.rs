//! The datasets a server holds: a directory that is a dataset, or a
//! directory of them (hidden names, such as ingests in progress, skipped).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cellflight_store::{Dataset, StoreError, MANIFEST_FILE};

use crate::error::ServiceError;

pub struct Catalog {
    datasets: BTreeMap<String, Arc<Dataset>>,
}

impl Catalog {
    pub fn load(data: &Path) -> Result<Self, StoreError> {
        let mut datasets = BTreeMap::new();
        if data.join(MANIFEST_FILE).exists() {
            add(&mut datasets, Dataset::open(data)?);
            return Ok(Self { datasets });
        }
        let entries = std::fs::read_dir(data).map_err(|source| StoreError::Io {
            path: data.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden || !entry.path().is_dir() {
                continue;
            }
            match Dataset::open(&entry.path()) {
                Ok(dataset) => add(&mut datasets, dataset),
                Err(e) => tracing::warn!("skipping {}: {e}", entry.path().display()),
            }
        }
        Ok(Self { datasets })
    }

    pub fn datasets(&self) -> impl Iterator<Item = &Arc<Dataset>> {
        self.datasets.values()
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    /// The dataset `name`, or, when none is named, the only one served.
    pub fn resolve(&self, name: Option<&str>) -> Result<&Arc<Dataset>, ServiceError> {
        match name {
            Some(name) => self.datasets.get(name).ok_or_else(|| {
                let known: Vec<&str> = self.datasets.keys().map(String::as_str).collect();
                ServiceError::NotFound(format!("unknown dataset {name:?}; served: {known:?}"))
            }),
            None if self.datasets.len() == 1 => Ok(self.datasets.values().next().expect("one")),
            None => Err(ServiceError::InvalidArgument(format!(
                "this server holds {} datasets: name one with \"dataset\"",
                self.datasets.len()
            ))),
        }
    }
}

fn add(datasets: &mut BTreeMap<String, Arc<Dataset>>, dataset: Dataset) {
    let name = dataset.manifest().name.to_string();
    datasets.insert(name, Arc::new(dataset));
}
