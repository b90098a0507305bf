//! The engine: what every request of a server shares (the catalog, the SQL
//! runtime, the caches of what requests derive from dataset versions), and
//! its API: plan a stream, serve a partition of it, run SQL, refresh.

use std::sync::Arc;

use cellflight_schemas::{StreamRequest, StreamTicket};
use cellflight_sql::{CatalogSnapshot, CohortCache, SessionContext, SqlEngine};

use crate::caller::Caller;
use crate::cohort::WeightedCache;
use crate::columns::ColumnCache;
use crate::config::EngineConfig;
use crate::datasets::{resolve, ServedDatasets};
use crate::error::EngineError;
use crate::genes::GeneSpaceCache;
use crate::partition::{serve_partition, Partition};
use crate::plan::Plan;
use crate::tokens::Vocabularies;

#[derive(Debug)]
pub struct Engine {
    datasets: ServedDatasets,
    pub(crate) sql: SqlEngine,
    pub(crate) cohorts: CohortCache,
    pub(crate) weighted: WeightedCache,
    pub(crate) gene_spaces: GeneSpaceCache,
    /// Whole metadata columns: obs columns of minibatches, gene names.
    pub(crate) columns: ColumnCache,
    /// Token tables, for `tokens` streams.
    pub(crate) vocabularies: Vocabularies,
}

impl Engine {
    /// The engine over the datasets of `config.data`, which must hold at
    /// least one.
    pub fn new(config: &EngineConfig) -> Result<Self, EngineError> {
        let datasets = ServedDatasets::load(&config.data, config.default_dataset.as_deref())?;
        if datasets.snapshot().datasets().next().is_none() {
            return Err(EngineError::NoDatasets {
                data: config.data.clone(),
            });
        }
        Ok(Self {
            datasets,
            sql: SqlEngine::new(config.sql.clone(), config.spill_dir.clone())?,
            cohorts: CohortCache::new(config.cohort_cache_bytes),
            weighted: WeightedCache::new(config.cohort_cache_bytes),
            gene_spaces: GeneSpaceCache::new(config.cohort_cache_bytes),
            columns: ColumnCache::new(config.column_cache_bytes),
            vocabularies: Vocabularies::of(config),
        })
    }

    /// The catalog as it is now, as `caller` sees it.
    pub fn snapshot(&self, caller: &Caller) -> Arc<CatalogSnapshot> {
        self.datasets.snapshot().restricted(&caller.access)
    }

    /// The shared SQL runtime and its limits.
    pub fn sql(&self) -> &SqlEngine {
        &self.sql
    }

    /// A fresh SQL session over the catalog as it is now, as `caller` sees
    /// it; the snapshot it pins stays readable for as long as the query runs.
    pub fn sql_session(
        &self,
        caller: &Caller,
    ) -> Result<(Arc<CatalogSnapshot>, SessionContext), EngineError> {
        let snapshot = self.snapshot(caller);
        let ctx = self.sql.context(&snapshot)?;
        Ok((snapshot, ctx))
    }

    /// `request` planned against the dataset it names (or the default).
    pub async fn plan(&self, caller: &Caller, request: StreamRequest) -> Result<Plan, EngineError> {
        let snapshot = self.snapshot(caller);
        let dataset = resolve(&snapshot, request.dataset.as_deref())?;
        Plan::build(self, &snapshot, dataset, request).await
    }

    /// The plan a ticket was cut from, if its dataset is still at the
    /// ticket's version.
    pub async fn plan_ticket(
        &self,
        caller: &Caller,
        ticket: &StreamTicket,
    ) -> Result<Plan, EngineError> {
        let snapshot = self.snapshot(caller);
        let dataset = resolve(&snapshot, ticket.request.dataset.as_deref())?;
        let current = dataset.version();
        if current != ticket.dataset_version {
            return Err(EngineError::StaleTicket {
                dataset: dataset.name().to_string(),
                ticket_version: ticket.dataset_version.clone(),
                current_version: current.to_string(),
            });
        }
        let plan = Plan::build(self, &snapshot, dataset, ticket.request.clone()).await?;
        plan.check_vocabulary(ticket.vocabulary_hash.as_deref())?;
        Ok(plan)
    }

    /// Starts serving `partition` of `plan` from `start_batch` on, on a
    /// blocking thread of its own.
    pub fn partition(
        &self,
        plan: Arc<Plan>,
        partition: u32,
        start_batch: u64,
    ) -> Result<Partition, EngineError> {
        serve_partition(plan, partition, start_batch)
    }

    /// Reopens the data directory: new and replaced datasets (and
    /// collections) appear, removed ones go. It changes what everyone sees, so only a caller
    /// granted every dataset may. Answers the catalog now served.
    pub async fn refresh(
        self: &Arc<Self>,
        caller: &Caller,
    ) -> Result<Arc<CatalogSnapshot>, EngineError> {
        if caller.access != cellflight_sql::Access::All {
            return Err(EngineError::RefreshNeedsEveryGrant);
        }
        let engine = Arc::clone(self);
        tokio::task::spawn_blocking(move || engine.datasets.refresh())
            .await
            .map_err(|e| EngineError::TaskFailed {
                task: "refreshing the catalog",
                reason: e.to_string(),
            })?
    }
}
