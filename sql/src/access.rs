//! Which datasets one caller may read, and the schema that stands in for a
//! dataset it may not: planning any query that reaches such a dataset (a
//! join, a subquery, an unqualified name resolving to it) fails with
//! [`SqlError::PermissionDenied`] naming it.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
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

/// A dataset the caller may not read: it lists no tables, and naming one
/// of its tables is refused.
#[derive(Debug)]
pub(crate) struct DeniedSchema {
    pub dataset: String,
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
