//! What every request of a server shares: the catalog, the SQL runtime and
//! the caches of what requests derive from dataset versions.

use std::sync::Arc;

use cellflight_sql::SessionContext;
use cellflight_sql::{CatalogSnapshot, CohortCache, SqlEngine};

use crate::catalog::Catalog;
use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::stream::{ColumnCache, WeightedCache};
use crate::stream_slots::StreamSlots;

pub struct ServerState {
    pub catalog: Catalog,
    pub sql: SqlEngine,
    pub cohorts: CohortCache,
    pub weighted: WeightedCache,
    /// Whole metadata columns: obs columns of minibatches, gene names.
    pub columns: ColumnCache,
    /// The DoGet streams open now, within the configured limits.
    pub streams: Arc<StreamSlots>,
    pub metrics: Arc<Metrics>,
}

impl ServerState {
    /// A fresh SQL session over the catalog as it is now; the snapshot it
    /// pins stays readable for as long as the query runs.
    pub fn sql_session(&self) -> Result<(Arc<CatalogSnapshot>, SessionContext), ServiceError> {
        let snapshot = self.catalog.snapshot();
        let ctx = self.sql.context(&snapshot)?;
        Ok((snapshot, ctx))
    }
}
