//! Which datasets one caller may read, and the catalog that caller sees: it
//! lists only the datasets granted, and planning any query that reaches
//! another one (a join, a subquery, an unqualified name resolving to it)
//! fails with [`SqlError::PermissionDenied`] naming it.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::error::SqlError;

/// The datasets a caller may read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Access {
    /// Every dataset: no grants configured, or a caller granted all.
    All,
    /// Only these datasets, by name.
    Granted(Arc<BTreeSet<String>>),
}

impl Access {
    pub fn granted(datasets: impl IntoIterator<Item = String>) -> Self {
        Self::Granted(Arc::new(datasets.into_iter().collect()))
    }

    pub fn allows(&self, dataset: &str) -> bool {
        match self {
            Self::All => true,
            Self::Granted(datasets) => datasets.contains(dataset),
        }
    }

    /// `Ok` if `dataset` may be read, else the error naming it.
    pub fn check(&self, dataset: &str) -> Result<(), SqlError> {
        if self.allows(dataset) {
            Ok(())
        } else {
            Err(SqlError::PermissionDenied {
                dataset: dataset.to_string(),
            })
        }
    }
}

/// The catalog of every dataset, seen by a caller with `access`. Datasets
/// not granted are left out of its listings (so `information_schema` does
/// not name them), yet still resolve, to a [`DeniedSchema`], so that a
/// query naming one is refused as denied rather than as unknown.
#[derive(Debug)]
pub(crate) struct GrantedCatalog {
    pub all: Arc<dyn CatalogProvider>,
    pub access: Access,
}

impl CatalogProvider for GrantedCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.all.schema_names();
        names.retain(|name| self.access.allows(name));
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let schema = self.all.schema(name)?;
        if self.access.allows(name) {
            Some(schema)
        } else {
            Some(Arc::new(DeniedSchema {
                dataset: name.to_string(),
            }))
        }
    }
}

/// A dataset the caller may not read: it lists no tables, and naming one
/// of its tables is refused.
#[derive(Debug)]
struct DeniedSchema {
    dataset: String,
}

#[async_trait]
impl SchemaProvider for DeniedSchema {
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }

    async fn table(&self, _name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let denied = SqlError::PermissionDenied {
            dataset: self.dataset.clone(),
        };
        Err(DataFusionError::External(Box::new(denied)))
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
