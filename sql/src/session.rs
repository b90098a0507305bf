//! One shared runtime (memory pool, spill directory, caches) and a fresh
//! `SessionContext` per query, so no client's state reaches another's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::{CatalogSnapshot, CATALOG};
use crate::error::SqlError;
use crate::memory::QueryPool;
use crate::planning::PlanningPool;
use crate::series_bounds::bound_series_functions;
use crate::value_bounds::BoundValues;

/// The bounds every query runs within.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlLimits {
    /// Size of the memory pool shared by all running queries.
    pub memory_bytes: usize,
    /// Most of that pool one query may hold.
    pub query_memory_bytes: usize,
    /// Wall-clock limit of one query, planning included.
    pub timeout: Duration,
    /// Most rows an ad hoc query may return (cohorts are not capped).
    pub max_rows: usize,
    /// Queries planned at once, each on a thread of its own.
    pub planning_threads: usize,
}

/// The shared SQL runtime of a server.
#[derive(Debug)]
pub struct SqlEngine {
    runtime: Arc<RuntimeEnv>,
    limits: SqlLimits,
    planning: PlanningPool,
}

impl SqlEngine {
    /// A runtime with a fair spilling pool of `limits.memory_bytes`; with no
    /// `spill_dir`, operators that would spill fail with ResourceExhausted.
    pub fn new(limits: SqlLimits, spill_dir: Option<PathBuf>) -> Result<Self, SqlError> {
        let mode = match spill_dir {
            Some(dir) => DiskManagerMode::Directories(vec![dir]),
            None => DiskManagerMode::Disabled,
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(limits.memory_bytes)))
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(mode))
            .build_arc()
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        let planning = PlanningPool::new(limits.planning_threads.max(1));
        Ok(Self {
            runtime,
            limits,
            planning,
        })
    }

    pub fn limits(&self) -> &SqlLimits {
        &self.limits
    }

    pub(crate) fn planning(&self) -> &PlanningPool {
        &self.planning
    }

    /// A fresh context over `snapshot`: the shared pool, spill directory and
    /// caches, the snapshot's catalog and pinned files, functions whose
    /// values are bounded (see `value_bounds`, `series_bounds`), and nothing else.
    pub fn context(&self, snapshot: &CatalogSnapshot) -> Result<SessionContext, SqlError> {
        // Without a default dataset, unqualified names resolve nowhere.
        self.context_with_default(snapshot, snapshot.default_dataset().unwrap_or("public"))
    }

    /// As [`Self::context`], with unqualified names resolving to `dataset`.
    pub(crate) fn context_with_default(
        &self,
        snapshot: &CatalogSnapshot,
        dataset: &str,
    ) -> Result<SessionContext, SqlError> {
        let pool = QueryPool::new(
            Arc::clone(&self.runtime.memory_pool),
            self.limits.query_memory_bytes,
        );
        let runtime = RuntimeEnvBuilder::from_runtime_env(&self.runtime)
            .with_memory_pool(Arc::new(pool))
            .with_object_store_registry(snapshot.object_store_registry())
            .build_arc()
            .map_err(|e| SqlError::Internal(e.to_string()))?;
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, dataset)
            .with_information_schema(true);
        let builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime);
        let ctx = SessionContext::new_with_state(bounded_state(builder));
        ctx.register_catalog(CATALOG, snapshot.catalog());
        Ok(ctx)
    }
}

/// The state `builder` makes, with DataFusion's functions, each making
/// values within the bounds of `value_bounds` and `series_bounds`.
pub(crate) fn bounded_state(builder: SessionStateBuilder) -> SessionState {
    let mut state = builder
        .with_default_features()
        .with_analyzer_rule(Arc::new(BoundValues))
        .build();
    bound_series_functions(&mut state);
    state
}
