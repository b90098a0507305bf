//! Cohorts: the sorted, distinct cell ids a SQL predicate or query selects,
//! cached by dataset version and normalised query.

use std::sync::Arc;

use datafusion::sql::parser::DFParser;

use crate::access::Access;
use crate::cache::{ByteLru, CacheCost};
use crate::catalog::CatalogSnapshot;
use crate::error::SqlError;
use crate::query::single_query;
use crate::scan::{append_ids, scan, InternalQuery, OutputColumn, Table};
use crate::session::SqlEngine;
use crate::shape::check_shape;

/// What selects a cohort's cells.
#[derive(Debug, Clone)]
pub enum CohortQuery {
    /// A boolean SQL expression over the dataset's `cells` columns, e.g.
    /// `plate = 'plate3' AND stat_n_genes > 500`.
    Predicate(String),
    /// A full query returning one unsigned integer column `cell_id`; joins
    /// and subqueries allowed, unqualified tables are the dataset's.
    Select(String),
}

/// The cells of a cohort: sorted, distinct, 4 bytes a cell.
#[derive(Debug)]
pub struct Cohort {
    dataset: String,
    version: String,
    query: String,
    ids: Vec<u32>,
}

impl Cohort {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn dataset(&self) -> &str {
        &self.dataset
    }
    /// The dataset version the cohort was computed on.
    pub fn version(&self) -> &str {
        &self.version
    }
    /// The normalised SQL that selected the cells.
    pub fn query(&self) -> &str {
        &self.query
    }
}

/// The cohort of `dataset` (as pinned by `snapshot`) selected by `query`,
/// from `cache` or computed and cached.
pub async fn cohort(
    engine: &SqlEngine,
    snapshot: &CatalogSnapshot,
    cache: &CohortCache,
    dataset: &str,
    query: &CohortQuery,
) -> Result<Arc<Cohort>, SqlError> {
    let pinned = snapshot.dataset(dataset)?;
    let sql = normalise(dataset, query)?;
    let key = CohortKey {
        dataset: dataset.to_string(),
        version: pinned.version().to_string(),
        query: sql,
        access: snapshot.access().clone(),
    };
    cache
        .get_or_try_insert(&key, || async {
            let ids = select_ids(engine, snapshot, dataset, &key.query).await?;
            Ok(Cohort {
                dataset: key.dataset.clone(),
                version: key.version.clone(),
                query: key.query.clone(),
                ids,
            })
        })
        .await
}

/// The query as canonical SQL (the parsed AST printed back), so spelling
/// and whitespace don't split the cache, and a predicate can only ever be
/// one expression: it is parsed alone, to the end of its text.
pub(crate) fn normalise(dataset: &str, query: &CohortQuery) -> Result<String, SqlError> {
    match query {
        CohortQuery::Predicate(predicate) => {
            let predicate = expression(predicate, "a cohort predicate")?;
            // Dataset names are plain identifiers ([a-z][a-z0-9_]*).
            Ok(format!(
                "SELECT cell_id FROM {dataset}.cells WHERE {predicate}"
            ))
        }
        CohortQuery::Select(sql) => Ok(single_query(sql)?.to_string()),
    }
}

/// One SQL expression, parsed alone to the end of its text and printed
/// back: safe to splice into a query. `what` names it in errors.
pub(crate) fn expression(text: &str, what: &str) -> Result<String, SqlError> {
    check_shape(text, what)?;
    let parsed =
        DFParser::parse_sql_into_expr(text).map_err(|e| SqlError::from_datafusion(e, 0))?;
    if parsed.alias.is_some() {
        return Err(SqlError::InvalidQuery(format!(
            "{what} is one expression, without an alias"
        )));
    }
    Ok(parsed.expr.to_string())
}

async fn select_ids(
    engine: &SqlEngine,
    snapshot: &CatalogSnapshot,
    dataset: &str,
    sql: &str,
) -> Result<Vec<u32>, SqlError> {
    let mut ids = Vec::new();
    let columns = [OutputColumn::unsigned("cell_id")];
    scan(
        engine,
        snapshot,
        dataset,
        InternalQuery {
            sql,
            what: "a cohort query",
            columns: &columns,
            rows_of: Table::Cells,
        },
        |batch| append_ids(batch.column(0), "cell_id", &mut ids),
    )
    .await?;
    ids.sort_unstable();
    ids.dedup();
    ids.shrink_to_fit();
    Ok(ids)
}
/// What a cohort is cached under: the dataset version and the normalised
/// query, so a replaced dataset's cohorts are never served again; and the
/// caller's access, so a cohort one caller's grants allowed (its query
/// reaching another dataset) is never served to a caller without them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CohortKey {
    pub dataset: String,
    pub version: String,
    pub query: String,
    pub access: Access,
}

/// Cohorts by (dataset, version, normalised query, access), within a byte budget,
/// least recently used evicted first.
pub type CohortCache = ByteLru<CohortKey, Cohort>;

impl CacheCost for Cohort {
    fn cost_bytes(&self) -> usize {
        self.ids.len() * size_of::<u32>()
            + self.query.len()
            + self.dataset.len()
            + self.version.len()
    }
}
