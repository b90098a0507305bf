//! Sampling weights of a cohort's cells, from SQL: an expression over
//! `cells`, or the inverse size of each cell's class (class balance).

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;

use crate::catalog::CatalogSnapshot;
use crate::cohort::{expression, normalise, CohortQuery};
use crate::error::SqlError;
use crate::scan::{append_ids, scan, InternalQuery, OutputColumn, Table};
use crate::session::SqlEngine;

/// How each cohort cell is weighted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Weighting {
    /// A numeric SQL expression over the dataset's `cells` columns, e.g.
    /// `CASE WHEN plate = 'plate1' THEN 2 ELSE 1 END`.
    Expression(String),
    /// A `cells` column: each cell weighs 1 / (cohort cells of its value),
    /// so every value (null included) is drawn equally often.
    BalanceBy(String),
}

/// A cohort's cells, sorted and distinct, with their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedCells {
    pub ids: Vec<u32>,
    pub weights: Vec<f64>,
}

/// The canonical SQL computing `(cell_id, weight)` for the cohort `query`
/// of `dataset`: it names the cohort and its weights exactly, so it also
/// serves as a cache key.
pub fn weights_sql(
    dataset: &str,
    query: &CohortQuery,
    weighting: &Weighting,
) -> Result<String, SqlError> {
    let cohort = normalise(dataset, query)?;
    let weight = match weighting {
        Weighting::Expression(text) => expression(text, "a weight expression")?,
        Weighting::BalanceBy(column) => {
            let column = quote_identifier(column);
            format!("1.0 / CAST(count(*) OVER (PARTITION BY {column}) AS DOUBLE)")
        }
    };
    Ok(format!(
        "SELECT cell_id, CAST({weight} AS DOUBLE) AS weight FROM {dataset}.cells \
         WHERE cell_id IN ({cohort})"
    ))
}

/// The cells of a cohort and their weights; a null weight is an error
/// naming the cell.
pub async fn cohort_weights(
    engine: &SqlEngine,
    snapshot: &CatalogSnapshot,
    dataset: &str,
    sql: &str,
) -> Result<WeightedCells, SqlError> {
    let mut pairs: Vec<(u32, f64)> = Vec::new();
    let columns = [
        OutputColumn::unsigned("cell_id"),
        OutputColumn::float64("weight"),
    ];
    scan(
        engine,
        snapshot,
        dataset,
        InternalQuery {
            sql,
            what: "a weight query",
            columns: &columns,
            rows_of: Table::Cells,
        },
        |batch| {
            let mut ids = Vec::with_capacity(batch.num_rows());
            append_ids(batch.column(0), "cell_id", &mut ids)?;
            let weights = batch.column(1).as_primitive::<Float64Type>();
            for (row, &id) in ids.iter().enumerate() {
                if weights.is_null(row) {
                    return Err(SqlError::InvalidQuery(format!(
                        "the weight of cell {id} is null"
                    )));
                }
                pairs.push((id, weights.value(row)));
            }
            Ok(())
        },
    )
    .await?;
    pairs.sort_unstable_by_key(|&(id, _)| id);
    Ok(WeightedCells {
        ids: pairs.iter().map(|&(id, _)| id).collect(),
        weights: pairs.iter().map(|&(_, w)| w).collect(),
    })
}

/// `name` as a quoted SQL identifier (so any column name is safe).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
