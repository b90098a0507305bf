//! Whole metadata columns held in memory, read once per dataset (or
//! collection) version:
//! obs columns attached to minibatches, gene names resolved for requests.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef};
use arrow_schema::FieldRef;
use cellflight_sql::{ByteLru, CacheCost};
use cellflight_store::{Served, Table};

use crate::error::EngineError;

/// One column, all rows in cell (or gene) order.
#[derive(Debug)]
pub(crate) struct CachedColumn {
    field: FieldRef,
    array: ArrayRef,
}

impl CachedColumn {
    pub(crate) fn field(&self) -> &FieldRef {
        &self.field
    }

    pub(crate) fn array(&self) -> &dyn Array {
        self.array.as_ref()
    }
}

impl CacheCost for CachedColumn {
    fn cost_bytes(&self) -> usize {
        self.array.get_array_memory_size()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ColumnKey {
    version: String,
    table: Table,
    column: String,
}

/// Columns by (dataset version, table, column), within a byte budget.
#[derive(Debug)]
pub(crate) struct ColumnCache {
    columns: ByteLru<ColumnKey, CachedColumn>,
}

impl ColumnCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        Self {
            columns: ByteLru::new(budget_bytes),
        }
    }

    /// Column `column` of `table`, from the cache or read whole (on a
    /// blocking thread: a column of 10^8 cells takes a while).
    pub(crate) async fn get_or_read(
        &self,
        dataset: &Served,
        table: Table,
        column: &str,
    ) -> Result<Arc<CachedColumn>, EngineError> {
        let key = ColumnKey {
            version: dataset.version().to_string(),
            table,
            column: column.to_string(),
        };
        self.columns
            .get_or_try_insert(&key, || async {
                let reading = dataset.clone();
                let name = column.to_string();
                let (field, array) =
                    tokio::task::spawn_blocking(move || reading.column(table, &name))
                        .await
                        .map_err(|e| EngineError::TaskFailed {
                            task: "reading a metadata column",
                            reason: e.to_string(),
                        })??;
                Ok(CachedColumn { field, array })
            })
            .await
    }
}
