//! The cells a stream samples from: every cell, a SQL cohort, or a cohort
//! with sampling weights; and the sampler's plan over it.

use std::sync::Arc;

use cellflight_sampler::{Mode, Plan, SamplerConfig, Weights};
use cellflight_schemas::{Sampling, StreamRequest};
use cellflight_sql::{
    cohort, cohort_weights, weights_sql, Access, ByteLru, CacheCost, CatalogSnapshot, Cohort,
    CohortQuery, Weighting,
};
use cellflight_store::Served;

use crate::engine::Engine;
use crate::error::EngineError;

/// A cohort with its sampling weights, one a cell.
#[derive(Debug)]
pub(crate) struct WeightedCohort {
    ids: Vec<u32>,
    weights: Arc<Weights>,
}

impl CacheCost for WeightedCohort {
    fn cost_bytes(&self) -> usize {
        // The ids, and the weights' running sums.
        self.ids.len() * (size_of::<u32>() + size_of::<f64>())
    }
}

/// Weighted cohorts by (dataset version, the SQL that computes them, the
/// caller's access), as [`cellflight_sql::CohortKey`] keys cohorts.
pub(crate) type WeightedCache = ByteLru<(String, String, Access), WeightedCohort>;

/// The sorted cell ids a stream's plan positions refer to.
#[derive(Debug, Clone)]
pub(crate) enum StreamCohort {
    /// Every cell of the dataset: position i is cell i.
    All {
        n_cells: u64,
    },
    Listed(Arc<Cohort>),
    Weighted(Arc<WeightedCohort>),
}

impl StreamCohort {
    /// The cohort `request` selects from `dataset` (as pinned by `snapshot`),
    /// computed or taken from the server's caches.
    pub(crate) async fn resolve(
        engine: &Engine,
        snapshot: &CatalogSnapshot,
        dataset: &Served,
        request: &StreamRequest,
    ) -> Result<Self, EngineError> {
        let name = dataset.name();
        if let Some(weighting) = weighting(request) {
            let query = cohort_query(request.query.as_deref().unwrap_or("TRUE"));
            let sql = weights_sql(name, &query, &weighting)?;
            let key = (
                dataset.version().to_string(),
                sql,
                snapshot.access().clone(),
            );
            let weighted = engine.weighted.get_or_try_insert(&key, || async {
                let cells = cohort_weights(&engine.sql, snapshot, name, &key.1).await?;
                Ok::<_, EngineError>(WeightedCohort {
                    ids: cells.ids,
                    weights: Arc::new(Weights::new(cells.weights)?),
                })
            });
            return Ok(Self::Weighted(weighted.await?));
        }
        match &request.query {
            None => Ok(Self::All {
                n_cells: dataset.n_cells(),
            }),
            Some(text) => {
                let query = cohort_query(text);
                let cohort = cohort(&engine.sql, snapshot, &engine.cohorts, name, &query).await?;
                Ok(Self::Listed(cohort))
            }
        }
    }

    /// Cells in the cohort.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Self::All { n_cells } => *n_cells,
            Self::Listed(cohort) => cohort.len() as u64,
            Self::Weighted(cohort) => cohort.ids.len() as u64,
        }
    }

    /// The cell id at cohort position `position`.
    pub(crate) fn cell_id(&self, position: u64) -> u64 {
        match self {
            Self::All { .. } => position,
            Self::Listed(cohort) => u64::from(cohort.ids()[position as usize]),
            Self::Weighted(cohort) => u64::from(cohort.ids[position as usize]),
        }
    }

    /// The sampler's plan of this cohort for `config`.
    pub(crate) fn plan(&self, config: &SamplerConfig) -> Result<Plan, EngineError> {
        let plan = match self {
            Self::Weighted(cohort) => Plan::weighted(cohort.weights.clone(), config),
            _ => Plan::new(self.len(), config),
        };
        Ok(plan?)
    }
}

/// A full query if the text starts with `SELECT` or `WITH`, else a predicate.
fn cohort_query(text: &str) -> CohortQuery {
    let first = text
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    if first.eq_ignore_ascii_case("select") || first.eq_ignore_ascii_case("with") {
        CohortQuery::Select(text.to_string())
    } else {
        CohortQuery::Predicate(text.to_string())
    }
}

fn weighting(request: &StreamRequest) -> Option<Weighting> {
    if request.sampling != Sampling::Weighted {
        return None;
    }
    match (&request.weights, &request.balance_by) {
        (Some(expression), _) => Some(Weighting::Expression(expression.clone())),
        (None, Some(column)) => Some(Weighting::BalanceBy(column.clone())),
        // StreamRequest::validate refuses weighted sampling without either.
        (None, None) => None,
    }
}

/// The sampler's configuration for `request` over a cohort of `cohort_size`.
pub(crate) fn sampler_config(request: &StreamRequest, cohort_size: u64) -> SamplerConfig {
    SamplerConfig {
        batch_size: request.batch_size,
        block_size: request.block_size,
        fetch_factor: request.fetch_factor,
        seed: request.seed,
        epoch: request.epoch,
        partitions: request.partitions,
        drop_last: request.drop_last,
        mode: match request.sampling {
            Sampling::BlockShuffle => Mode::BlockShuffle,
            Sampling::Sequential => Mode::Sequential,
            Sampling::Weighted => Mode::Weighted {
                num_samples: request.num_samples.unwrap_or(cohort_size),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_a_select_when_it_starts_like_one() {
        assert!(matches!(
            cohort_query("  SELECT cell_id FROM cells"),
            CohortQuery::Select(_)
        ));
        assert!(matches!(
            cohort_query("with x AS (SELECT 1) SELECT cell_id FROM cells"),
            CohortQuery::Select(_)
        ));
        assert!(matches!(
            cohort_query("(SELECT cell_id FROM cells)"),
            CohortQuery::Predicate(_)
        ));
        assert!(matches!(
            cohort_query("selected = true"),
            CohortQuery::Predicate(_)
        ));
    }
}
