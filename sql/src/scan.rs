//! Internal queries over a dataset's metadata (cohorts, gene selections,
//! weights): planned under the read-only rules, run uncapped within the
//! deadline, their output columns checked before any row is read.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema, UInt64Type};
use futures::StreamExt;
use tokio::time::Instant;

use crate::catalog::CatalogSnapshot;
use crate::error::SqlError;
use crate::query::plan_query;
use crate::session::SqlEngine;

/// A column an internal query must return: its name and what its type must be.
#[derive(Clone)]
pub(crate) struct OutputColumn {
    name: &'static str,
    accepts: fn(&DataType) -> bool,
    expected: &'static str,
}

impl OutputColumn {
    pub(crate) fn unsigned(name: &'static str) -> Self {
        Self {
            name,
            accepts: DataType::is_unsigned_integer,
            expected: "unsigned integer",
        }
    }

    pub(crate) fn float64(name: &'static str) -> Self {
        Self {
            name,
            accepts: |t| *t == DataType::Float64,
            expected: "Float64",
        }
    }
}

/// The table an internal query selects from, whose row count bounds the
/// rows it may return: a query returning more (a join or a generated
/// series repeating ids) is refused before its rows are kept, so what is
/// collected never outgrows the dataset.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Table {
    Cells,
    Genes,
}

/// An internal query: its SQL (unqualified tables are the dataset's), what
/// errors call it, the columns it must return and the table it selects.
pub(crate) struct InternalQuery<'a> {
    pub(crate) sql: &'a str,
    pub(crate) what: &'static str,
    pub(crate) columns: &'a [OutputColumn],
    pub(crate) rows_of: Table,
}

/// Runs `query` over `dataset` and calls `visit` with each batch.
pub(crate) async fn scan(
    engine: &SqlEngine,
    snapshot: &CatalogSnapshot,
    dataset: &str,
    query: InternalQuery<'_>,
    mut visit: impl FnMut(&RecordBatch) -> Result<(), SqlError>,
) -> Result<(), SqlError> {
    let limits = engine.limits();
    let memory = limits.memory_bytes;
    let df_error = move |e| SqlError::from_datafusion(e, memory);
    let served = snapshot.dataset(dataset)?;
    let (most_rows, table) = match query.rows_of {
        Table::Cells => (served.n_cells(), "cells"),
        Table::Genes => (served.n_genes(), "genes"),
    };
    let what = query.what;
    let deadline = Instant::now() + limits.timeout;
    let ctx = engine.context_with_default(snapshot, dataset)?;
    let (sql, columns) = (query.sql.to_string(), query.columns.to_vec());
    let planning = async move {
        let plan = plan_query(&ctx, &sql, memory).await?;
        check_columns(plan.schema().as_arrow(), what, &columns)?;
        let df = ctx.execute_logical_plan(plan).await.map_err(df_error)?;
        df.execute_stream().await.map_err(df_error)
    };
    let mut stream = engine
        .planning()
        .run(deadline, limits.timeout, planning)
        .await?;
    let run = async {
        let mut rows = 0u64;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(df_error)?;
            rows += batch.num_rows() as u64;
            if rows > most_rows {
                return Err(SqlError::InvalidQuery(format!(
                    "{what} returned more rows than the dataset has {table} ({most_rows}): select each once"
                )));
            }
            visit(&batch)?;
        }
        Ok(())
    };
    tokio::time::timeout_at(deadline, run)
        .await
        .map_err(|_| SqlError::Timeout {
            limit: limits.timeout,
        })?
}

fn check_columns(schema: &Schema, what: &str, columns: &[OutputColumn]) -> Result<(), SqlError> {
    let fields = schema.fields();
    let ok = fields.len() == columns.len()
        && fields
            .iter()
            .zip(columns)
            .all(|(f, c)| f.name() == c.name && (c.accepts)(f.data_type()));
    if ok {
        return Ok(());
    }
    let expected: Vec<String> = columns
        .iter()
        .map(|c| format!("{} {}", c.name, c.expected))
        .collect();
    let got: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect();
    Err(SqlError::InvalidQuery(format!(
        "{what} returns exactly the columns ({}), got ({})",
        expected.join(", "),
        got.join(", ")
    )))
}

/// Appends an unsigned id column's values, which must be non-null and fit
/// 32 bits (cell and gene ids do).
pub(crate) fn append_ids(
    column: &ArrayRef,
    name: &str,
    ids: &mut Vec<u32>,
) -> Result<(), SqlError> {
    let column = cast(column, &DataType::UInt64).map_err(|e| SqlError::Internal(e.to_string()))?;
    if column.null_count() > 0 {
        return Err(SqlError::InvalidQuery(format!(
            "a null {name} was selected"
        )));
    }
    let values = column.as_primitive::<UInt64Type>().values();
    ids.reserve(values.len());
    for &id in values.iter() {
        let id = u32::try_from(id)
            .map_err(|_| SqlError::InvalidQuery(format!("{name} {id} does not fit in 32 bits")))?;
        ids.push(id);
    }
    Ok(())
}
