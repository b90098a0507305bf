//! The `cellflight` catalog: one schema per dataset, with tables `cells` and `genes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use cellflight_store::Dataset;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider,
};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::object_store::{
    DefaultObjectStoreRegistry, ObjectStoreRegistry, ObjectStoreUrl,
};
use object_store::ObjectStore;

use crate::access::{Access, GrantedCatalog};
use crate::error::SqlError;
use crate::pinned_store::{PinnedStore, CELLS, GENES};

/// The catalog name every dataset lives in.
pub const CATALOG: &str = "cellflight";
/// URL scheme of the pinned-file object stores.
const SCHEME: &str = "cellflight";

/// An immutable view of a set of dataset versions. A query plans and runs
/// against one snapshot; the server swaps in a new snapshot on refresh, and
/// queries already running keep theirs (it holds the open files).
///
/// A snapshot is seen with an [`Access`]: restricted to a caller's grants,
/// it lists only the datasets granted, and SQL reaching any other fails.
pub struct CatalogSnapshot {
    datasets: BTreeMap<String, Arc<Dataset>>,
    default_dataset: Option<String>,
    /// Every dataset's schema; [`Self::catalog`] shows the caller its part.
    catalog: Arc<MemoryCatalogProvider>,
    /// Each dataset's pinned store, by dataset name.
    stores: Arc<BTreeMap<String, RegisteredStore>>,
    access: Access,
}

impl CatalogSnapshot {
    /// A snapshot of `datasets`; `default_dataset` (one of them) makes its
    /// tables reachable unqualified.
    pub fn new(
        datasets: Vec<Arc<Dataset>>,
        default_dataset: Option<&str>,
    ) -> Result<Arc<Self>, SqlError> {
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let mut by_name = BTreeMap::new();
        let mut stores = BTreeMap::new();
        for dataset in datasets {
            let name = dataset.manifest().name.to_string();
            let (schema, store) = dataset_schema(&dataset)?;
            stores.insert(name.clone(), store);
            catalog
                .register_schema(&name, schema)
                .map_err(|e| SqlError::Internal(e.to_string()))?;
            if by_name.insert(name.clone(), dataset).is_some() {
                return Err(SqlError::Internal(format!("two datasets named {name}")));
            }
        }
        if let Some(name) = default_dataset.filter(|n| !by_name.contains_key(*n)) {
            return Err(SqlError::NotFound {
                what: format!("default dataset {name}"),
            });
        }
        Ok(Arc::new(Self {
            datasets: by_name,
            default_dataset: default_dataset.map(str::to_string),
            catalog,
            stores: Arc::new(stores),
            access: Access::All,
        }))
    }

    /// The same datasets, seen with `access` in place of this snapshot's.
    pub fn restricted(self: &Arc<Self>, access: &Access) -> Arc<Self> {
        if *access == self.access {
            return Arc::clone(self);
        }
        Arc::new(Self {
            datasets: self.datasets.clone(),
            default_dataset: self.default_dataset.clone(),
            catalog: Arc::clone(&self.catalog),
            stores: Arc::clone(&self.stores),
            access: access.clone(),
        })
    }

    /// Which datasets this snapshot lets its caller read.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The dataset named `name`, as pinned by this snapshot, if it is
    /// served and granted.
    pub fn dataset(&self, name: &str) -> Result<&Arc<Dataset>, SqlError> {
        let dataset = self.datasets.get(name).ok_or_else(|| SqlError::NotFound {
            what: format!("unknown dataset {name:?}; served: {:?}", self.names()),
        })?;
        self.access.check(name)?;
        Ok(dataset)
    }

    /// Every dataset the caller may read, by name.
    pub fn datasets(&self) -> impl Iterator<Item = &Arc<Dataset>> {
        self.datasets
            .iter()
            .filter(|(name, _)| self.access.allows(name))
            .map(|(_, dataset)| dataset)
    }

    fn names(&self) -> Vec<&str> {
        self.datasets()
            .map(|d| d.manifest().name.as_str())
            .collect()
    }

    pub fn default_dataset(&self) -> Option<&str> {
        self.default_dataset.as_deref()
    }

    /// The SQL catalog as the caller sees it: see [`GrantedCatalog`].
    pub(crate) fn catalog(&self) -> Arc<dyn CatalogProvider> {
        match self.access {
            Access::All => self.catalog.clone(),
            Access::Granted(_) => Arc::new(GrantedCatalog {
                all: self.catalog.clone(),
                access: self.access.clone(),
            }),
        }
    }

    /// A registry holding only the pinned stores of the datasets the caller
    /// may read: no `file://`, so nothing in a query can reach the local
    /// filesystem, nor another dataset's files by URL.
    pub(crate) fn object_store_registry(&self) -> Arc<dyn ObjectStoreRegistry> {
        let registry = DefaultObjectStoreRegistry::new();
        // Fails only if absent, which is what we want.
        let _ = registry.deregister_store(ObjectStoreUrl::local_filesystem().as_ref());
        let granted = self
            .stores
            .iter()
            .filter(|(name, _)| self.access.allows(name));
        for (_, (url, store)) in granted {
            registry.register_store(url.as_ref(), store.clone());
        }
        Arc::new(registry)
    }
}

impl std::fmt::Debug for CatalogSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let versions: BTreeMap<_, _> = self
            .datasets
            .iter()
            .map(|(name, d)| (name, &d.manifest().version))
            .collect();
        f.debug_struct("CatalogSnapshot")
            .field("datasets", &versions)
            .field("default_dataset", &self.default_dataset)
            .finish()
    }
}

/// An object store and the URL it is registered under.
type RegisteredStore = (ObjectStoreUrl, Arc<dyn ObjectStore>);

/// The schema provider of one dataset, and the store its tables read through.
fn dataset_schema(
    dataset: &Arc<Dataset>,
) -> Result<(Arc<dyn SchemaProvider>, RegisteredStore), SqlError> {
    let m = dataset.manifest();
    // The version in the URL keeps DataFusion's metadata caches from ever
    // mixing two versions of one dataset.
    let base = format!("{SCHEME}://{}-{}/", m.name, m.version);
    let schema = MemorySchemaProvider::new();
    let cells_schema = dataset.cells_table().schema().clone();
    let genes_schema = dataset.genes_table().schema().clone();
    for (table, file, file_schema) in [
        ("cells", CELLS, cells_schema),
        ("genes", GENES, genes_schema),
    ] {
        schema
            .register_table(table.to_string(), listing_table(&base, file, file_schema)?)
            .map_err(|e| SqlError::Internal(e.to_string()))?;
    }
    let url = ObjectStoreUrl::parse(&base).map_err(|e| SqlError::Internal(e.to_string()))?;
    let store: Arc<dyn ObjectStore> = Arc::new(PinnedStore::new(dataset.clone()));
    Ok((Arc::new(schema), (url, store)))
}

/// A Parquet table over one file, with the file's own schema (so `Utf8` and
/// dictionary columns keep the types of docs/format.md).
fn listing_table(
    base: &str,
    file: &str,
    schema: SchemaRef,
) -> Result<Arc<dyn TableProvider>, SqlError> {
    let internal = |e: datafusion::error::DataFusionError| SqlError::Internal(e.to_string());
    let url = ListingTableUrl::parse(format!("{base}{file}")).map_err(internal)?;
    let options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config).map_err(internal)?))
}
