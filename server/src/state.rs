//! What every request of a server shares: the catalog, the SQL runtime and
//! the caches of what requests derive from dataset versions.

use std::sync::Arc;

use cellflight_sql::SessionContext;
use cellflight_sql::{Access, CatalogSnapshot, CohortCache, SqlEngine};

use crate::auth::Authenticator;
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
    /// Who may call, and what each may read.
    pub auth: Authenticator,
    /// Largest message a client may send (--max-request-size).
    pub max_request_bytes: usize,
}

impl ServerState {
    /// The catalog as it is now, as a caller with `access` sees it.
    pub fn snapshot(&self, access: &Access) -> Arc<CatalogSnapshot> {
        self.catalog.snapshot().restricted(access)
    }

    /// A fresh SQL session over the catalog as it is now, as a caller with
    /// `access` sees it; the snapshot it pins stays readable for as long as
    /// the query runs.
    pub fn sql_session(
        &self,
        access: &Access,
    ) -> Result<(Arc<CatalogSnapshot>, SessionContext), ServiceError> {
        let snapshot = self.snapshot(access);
        let ctx = self.sql.context(&snapshot)?;
        Ok((snapshot, ctx))
    }
}
