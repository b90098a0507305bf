//! A collection's tables in SQL. `cells` is a view: a UNION ALL of each
//! member's `cells` projected onto the collection's columns (cast to the
//! united types, null where the member lacks the column, `cell_id` moved
//! by the member's offset, `source_dataset` its name), planned lazily,
//! so a query reads the members' Parquet files as it would theirs and
//! their filters reach each member's scan. `genes` is small and held.

use std::collections::BTreeMap;
use std::sync::Arc;

use cellflight_store::{CellColumn, CellSource, Collection, CELL_ID};
use datafusion::catalog::{MemTable, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, ViewTable};
use datafusion::logical_expr::{cast, lit, Expr, LogicalPlan, LogicalPlanBuilder, Union};

use crate::error::SqlError;

/// The schema of `collection`, whose members' `cells` tables are
/// `member_cells` (by member name).
pub(crate) fn collection_schema(
    collection: &Collection,
    member_cells: &BTreeMap<String, Arc<dyn TableProvider>>,
) -> Result<Arc<dyn SchemaProvider>, SqlError> {
    let schema = MemorySchemaProvider::new();
    schema
        .register_table("cells".into(), cells_view(collection, member_cells)?)
        .map_err(internal)?;
    schema
        .register_table("genes".into(), genes_table(collection)?)
        .map_err(internal)?;
    Ok(Arc::new(schema))
}

fn cells_view(
    collection: &Collection,
    member_cells: &BTreeMap<String, Arc<dyn TableProvider>>,
) -> Result<Arc<dyn TableProvider>, SqlError> {
    let mut inputs = Vec::with_capacity(collection.members().len());
    for (m, member) in collection.members().iter().enumerate() {
        let name = member.manifest().name.as_str();
        let Some(cells) = member_cells.get(name) else {
            return Err(SqlError::Internal(format!(
                "member {name} has no cells table"
            )));
        };
        let offset = collection.offsets()[m];
        let projection = collection
            .cells()
            .iter()
            .map(|column| member_column(column, m, name, offset));
        let plan = LogicalPlanBuilder::scan(
            TableReference::partial(name, "cells"),
            provider_as_source(cells.clone()),
            None,
        )
        .and_then(|scan| scan.project(projection))
        .and_then(LogicalPlanBuilder::build)
        .map_err(internal)?;
        inputs.push(Arc::new(plan));
    }
    let plan = match inputs.len() {
        1 => Arc::unwrap_or_clone(inputs.remove(0)),
        _ => LogicalPlan::Union(Union::try_new_with_loose_types(inputs).map_err(internal)?),
    };
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// Column `column` of the collection, as member `member` (named `name`,
/// its first cell at `offset`) gives it.
fn member_column(column: &CellColumn, member: usize, name: &str, offset: u64) -> Expr {
    let field = &column.field;
    let own = || Expr::Column(Column::new_unqualified(field.name()));
    let expr = match &column.source {
        CellSource::CellId => Expr::Column(Column::new_unqualified(CELL_ID)) + lit(offset),
        CellSource::SourceDataset => cast(lit(name), field.data_type().clone()),
        CellSource::Members { present } if present[member] => {
            cast(own(), field.data_type().clone())
        }
        CellSource::Members { .. } => cast(lit(ScalarValue::Null), field.data_type().clone()),
    };
    expr.alias(field.name())
}

fn genes_table(collection: &Collection) -> Result<Arc<dyn TableProvider>, SqlError> {
    let genes = collection.genes_table();
    let table = MemTable::try_new(genes.schema(), vec![vec![genes.clone()]]).map_err(internal)?;
    Ok(Arc::new(table))
}

fn internal(error: datafusion::error::DataFusionError) -> SqlError {
    SqlError::Internal(error.to_string())
}
