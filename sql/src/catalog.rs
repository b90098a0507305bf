//! The `cellflight` catalog: one schema per dataset or collection, with
//! tables `cells` and `genes`.

use std::collections::BTreeMap;
use std::sync::Arc;

use cellflight_store::{Collection, Dataset, Served};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
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
use crate::collection_tables::collection_schema;
use crate::error::SqlError;
use crate::pinned_store::{PinnedStore, CELLS, GENES};

/// The catalog name every dataset lives in.
pub const CATALOG: &str = "cellflight";
/// URL scheme of the pinned-file object stores.
const SCHEME: &str = "cellflight";

/// An immutable view of a set of dataset versions, and of collections of
/// them. A query plans and runs against one snapshot; the server swaps in
/// a new snapshot on refresh, and queries already running keep theirs (it
/// holds the open files).
///
/// A snapshot is seen with an [`Access`]: restricted to a caller's grants,
/// it lists only the datasets granted, and the collections all of whose
/// members are, and SQL reaching any other fails.
pub struct CatalogSnapshot {
    datasets: BTreeMap<String, Served>,
    /// Each collection's members, by collection name.
    collections: Arc<BTreeMap<String, Vec<String>>>,
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
        Self::with_collections(datasets, Vec::new(), default_dataset)
    }

    /// A snapshot of `datasets` and of `collections` of them (opened over
    /// these very versions); `default_dataset` names one of either.
    pub fn with_collections(
        datasets: Vec<Arc<Dataset>>,
        collections: Vec<Arc<Collection>>,
        default_dataset: Option<&str>,
    ) -> Result<Arc<Self>, SqlError> {
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let mut by_name = BTreeMap::new();
        let mut stores = BTreeMap::new();
        let mut cells_tables = BTreeMap::new();
        for dataset in datasets {
            let name = dataset.manifest().name.to_string();
            let tables = dataset_schema(&dataset)?;
            stores.insert(name.clone(), tables.store);
            cells_tables.insert(name.clone(), tables.member_cells);
            register(&catalog, &name, tables.schema)?;
            if by_name
                .insert(name.clone(), Served::Dataset(dataset))
                .is_some()
            {
                return Err(SqlError::Internal(format!("two datasets named {name}")));
            }
        }
        let mut members = BTreeMap::new();
        for collection in collections {
            let name = collection.name().to_string();
            register(
                &catalog,
                &name,
                collection_schema(&collection, &cells_tables)?,
            )?;
            let names = collection
                .members()
                .iter()
                .map(|m| m.manifest().name.to_string());
            members.insert(name.clone(), names.collect());
            if by_name
                .insert(name.clone(), Served::Collection(collection))
                .is_some()
            {
                return Err(SqlError::Internal(format!(
                    "a dataset and a collection named {name}"
                )));
            }
        }
        if let Some(name) = default_dataset.filter(|n| !by_name.contains_key(*n)) {
            return Err(SqlError::NotFound {
                what: format!("default dataset {name}"),
            });
        }
        Ok(Arc::new(Self {
            datasets: by_name,
            collections: Arc::new(members),
            default_dataset: default_dataset.map(str::to_string),
            catalog,
            stores: Arc::new(stores),
            access: Access::All,
        }))
    }

    /// The same datasets, seen with `access` in place of this snapshot's:
    /// its datasets, and the collections all of whose members it grants
    /// (a grant naming a collection alone gives nothing).
    pub fn restricted(self: &Arc<Self>, access: &Access) -> Arc<Self> {
        if *access == self.access {
            return Arc::clone(self);
        }
        let access = match access {
            Access::All => Access::All,
            Access::Granted(granted) => {
                let datasets = granted
                    .iter()
                    .filter(|n| !self.collections.contains_key(*n));
                let collections = self
                    .collections
                    .iter()
                    .filter(|(_, members)| members.iter().all(|member| granted.contains(member)));
                let collections = collections.map(|(name, _)| name);
                Access::granted(datasets.chain(collections).cloned())
            }
        };
        Arc::new(Self {
            datasets: self.datasets.clone(),
            collections: Arc::clone(&self.collections),
            default_dataset: self.default_dataset.clone(),
            catalog: Arc::clone(&self.catalog),
            stores: Arc::clone(&self.stores),
            access,
        })
    }

    /// Which datasets this snapshot lets its caller read.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The dataset or collection named `name`, as pinned by this snapshot,
    /// if it is served and granted.
    pub fn dataset(&self, name: &str) -> Result<&Served, SqlError> {
        let dataset = self.datasets.get(name).ok_or_else(|| SqlError::NotFound {
            what: format!("unknown dataset {name:?}; served: {:?}", self.names()),
        })?;
        self.access.check(name)?;
        Ok(dataset)
    }

    /// Every dataset and collection the caller may read, by name.
    pub fn datasets(&self) -> impl Iterator<Item = &Served> {
        self.datasets
            .iter()
            .filter(|(name, _)| self.access.allows(name))
            .map(|(_, dataset)| dataset)
    }

    fn names(&self) -> Vec<&str> {
        self.datasets().map(Served::name).collect()
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
            .map(|(name, d)| (name, d.version()))
            .collect();
        f.debug_struct("CatalogSnapshot")
            .field("datasets", &versions)
            .field("default_dataset", &self.default_dataset)
            .finish()
    }
}

fn register(
    catalog: &MemoryCatalogProvider,
    name: &str,
    schema: Arc<dyn SchemaProvider>,
) -> Result<(), SqlError> {
    catalog
        .register_schema(name, schema)
        .map_err(|e| SqlError::Internal(e.to_string()))?;
    Ok(())
}

/// An object store and the URL it is registered under.
type RegisteredStore = (ObjectStoreUrl, Arc<dyn ObjectStore>);

/// One dataset's part of the catalog.
struct DatasetTables {
    schema: Arc<dyn SchemaProvider>,
    /// The store its tables read through.
    store: RegisteredStore,
    /// Its `cells` as collections read it: without the file's schema
    /// metadata, for members' metadata differ (by their versions) and a
    /// union of inputs whose metadata differ has a logical schema its
    /// physical plan does not match.
    member_cells: Arc<dyn TableProvider>,
}

fn dataset_schema(dataset: &Arc<Dataset>) -> Result<DatasetTables, SqlError> {
    let m = dataset.manifest();
    // The version in the URL keeps DataFusion's metadata caches from ever
    // mixing two versions of one dataset.
    let base = format!("{SCHEME}://{}-{}/", m.name, m.version);
    let schema = MemorySchemaProvider::new();
    let cells_schema = dataset.cells_table().schema();
    let cells = listing_table(&base, CELLS, cells_schema.clone())?;
    let plain = Arc::new(Schema::new(cells_schema.fields().clone()));
    let member_cells = listing_table(&base, CELLS, plain)?;
    let genes = listing_table(&base, GENES, dataset.genes_table().schema().clone())?;
    for (table, provider) in [("cells", cells), ("genes", genes)] {
        schema
            .register_table(table.to_string(), provider)
            .map_err(|e| SqlError::Internal(e.to_string()))?;
    }
    let url = ObjectStoreUrl::parse(&base).map_err(|e| SqlError::Internal(e.to_string()))?;
    let store: Arc<dyn ObjectStore> = Arc::new(PinnedStore::new(dataset.clone()));
    Ok(DatasetTables {
        schema: Arc::new(schema),
        store: (url, store),
        member_cells,
    })
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
