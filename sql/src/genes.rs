//! Gene selections: the genes a SQL predicate over `genes` picks, as the
//! output gene space of a stream (in `gene_idx` order).

use crate::catalog::CatalogSnapshot;
use crate::cohort::expression;
use crate::error::SqlError;
use crate::scan::{append_ids, scan, InternalQuery, OutputColumn, Table};
use crate::session::SqlEngine;

/// The sorted, distinct `gene_idx` of the genes of `dataset` for which
/// `predicate` (e.g. `stat_n_cells > 100 AND highly_variable`) holds.
pub async fn select_genes(
    engine: &SqlEngine,
    snapshot: &CatalogSnapshot,
    dataset: &str,
    predicate: &str,
) -> Result<Vec<u32>, SqlError> {
    let predicate = expression(predicate, "a gene predicate")?;
    let sql = format!("SELECT gene_idx FROM {dataset}.genes WHERE {predicate}");
    let mut genes = Vec::new();
    let columns = [OutputColumn::unsigned("gene_idx")];
    scan(
        engine,
        snapshot,
        dataset,
        InternalQuery {
            sql: &sql,
            what: "a gene selection",
            columns: &columns,
            rows_of: Table::Genes,
        },
        |batch| append_ids(batch.column(0), "gene_idx", &mut genes),
    )
    .await?;
    genes.sort_unstable();
    genes.dedup();
    Ok(genes)
}
