//! The engine: what every request of a server shares (the catalog, the SQL
//! runtime, the caches of what requests derive from dataset versions), and
//! its API: plan a stream, serve a partition of it, run SQL, refresh.

use std::sync::Arc;

use cellflight_schemas::{StreamRequest, StreamTicket};
use cellflight_sql::{CatalogSnapshot, CohortCache, SessionContext, SqlEngine};
use cellflight_store::RemoteReadStats;

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
    datasets: Arc<ServedDatasets>,
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
        let datasets = Arc::new(ServedDatasets::load(config)?);
        if datasets.snapshot().datasets().next().is_none() {
            return Err(EngineError::NoDatasets {
                data: config.data.to_string(),
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

    /// What reading datasets from an object store has cost (GETs, bytes,
    /// the block cache); `None` when they are on local disk.
    pub fn remote_reads(&self) -> Option<RemoteReadStats> {
        self.datasets.remote_reads()
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

    /// The plan a ticket was cut from: over the dataset's current version,
    /// or, from an object store, over the version the ticket names while
    /// its files exist (a replica that has not refreshed yet, or already
    /// has, serves the same bytes).
    pub async fn plan_ticket(
        &self,
        caller: &Caller,
        ticket: &StreamTicket,
    ) -> Result<Plan, EngineError> {
        let mut snapshot = self.snapshot(caller);
        let mut dataset = resolve(&snapshot, ticket.request.dataset.as_deref())?;
        let current = dataset.version();
        if current != ticket.dataset_version {
            let stale = EngineError::StaleTicket {
                dataset: dataset.name().to_string(),
                ticket_version: ticket.dataset_version.clone(),
                current_version: current.to_string(),
            };
            let (name, version) = (dataset.name().to_string(), ticket.dataset_version.clone());
            let datasets = Arc::clone(&self.datasets);
            let pinned = tokio::task::spawn_blocking(move || datasets.version(&name, &version))
                .await
                .map_err(|e| EngineError::TaskFailed {
                    task: "opening a dataset version",
                    reason: e.to_string(),
                })??;
            snapshot = pinned.ok_or(stale)?.restricted(&caller.access);
            dataset = resolve(&snapshot, ticket.request.dataset.as_deref())?;
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
