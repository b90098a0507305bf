//! The obs and var tables as Arrow: what the store writer takes, and what
//! the .h5ad writer turns into anndata dataframes.

use std::sync::Arc;

use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};
use cellflight_schemas::Categorical;
use cellflight_store::{GENE_ID, OBS_NAME};

use crate::design::{Design, Well};

pub(crate) const GENE_SYMBOL: &str = "gene_symbol";

/// The categorical obs columns, in column order.
const CATEGORICALS: [&str; 5] = ["plate", "cell_line", "drug", "dose", "sample"];

/// Builds obs batches: `obs_name`, the categoricals, then scanpy's QC columns.
pub(crate) struct ObsTable {
    schema: SchemaRef,
    /// Full category lists, in [`CATEGORICALS`] order.
    categories: Vec<Vec<String>>,
    /// The same lists as Arrow dictionaries, shared by every batch.
    dictionaries: Vec<ArrayRef>,
    /// Digits in a cell name: enough for the last cell.
    name_width: usize,
}

/// The per-cell facts of consecutive cells that obs shows.
pub(crate) struct ObsRows<'a> {
    pub first_cell: u64,
    pub wells: &'a [Well],
    pub cell_lines: &'a [u8],
    pub n_genes: &'a [u32],
    pub totals: &'a [f64],
}

impl ObsTable {
    pub(crate) fn new(design: &Design, cells: u64) -> Self {
        let categories = vec![
            Design::plate_names(),
            Design::cell_line_names(),
            Design::drug_names(),
            Design::dose_names(),
            design.sample_names(),
        ];
        let dictionaries = categories
            .iter()
            .map(|names| Arc::new(StringArray::from_iter_values(names)) as ArrayRef)
            .collect();
        Self {
            schema: obs_schema(),
            categories,
            dictionaries,
            name_width: (cells - 1).max(1).ilog10() as usize + 1,
        }
    }

    /// Every categorical with its full category list, for the manifest.
    pub(crate) fn categoricals(&self) -> Vec<Categorical> {
        CATEGORICALS
            .iter()
            .zip(&self.categories)
            .map(|(column, categories)| Categorical {
                column: column.to_string(),
                categories: categories.clone(),
                ordered: false,
            })
            .collect()
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub(crate) fn batch(
        &self,
        design: &Design,
        rows: &ObsRows<'_>,
    ) -> Result<RecordBatch, ArrowError> {
        let wells = rows.wells;
        // In CATEGORICALS order.
        let codes: [Vec<i32>; 5] = [
            wells.iter().map(|w| w.plate as i32).collect(),
            rows.cell_lines.iter().map(|&l| i32::from(l)).collect(),
            wells.iter().map(|w| w.drug as i32).collect(),
            wells.iter().map(|&w| design.dose(w) as i32).collect(),
            wells.iter().map(|w| w.sample() as i32).collect(),
        ];
        let mut columns = vec![self.names(rows.first_cell, wells.len())];
        for (codes, dictionary) in codes.into_iter().zip(&self.dictionaries) {
            let keys = Int32Array::from(codes);
            let column = DictionaryArray::<Int32Type>::try_new(keys, dictionary.clone())?;
            columns.push(Arc::new(column));
        }
        columns.push(Arc::new(Int64Array::from_iter_values(
            rows.n_genes.iter().map(|&n| i64::from(n)),
        )));
        columns.push(Arc::new(Float64Array::from(rows.totals.to_vec())));
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    fn names(&self, first_cell: u64, count: usize) -> ArrayRef {
        let width = self.name_width;
        let names = (first_cell..first_cell + count as u64).map(|i| format!("cell_{i:0width$}"));
        Arc::new(StringArray::from_iter_values(names))
    }
}

fn obs_schema() -> SchemaRef {
    let categorical = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = vec![Field::new(OBS_NAME, DataType::Utf8, false)];
    fields.extend(
        CATEGORICALS
            .iter()
            .map(|name| Field::new(*name, categorical.clone(), false)),
    );
    fields.push(Field::new("n_genes", DataType::Int64, false));
    fields.push(Field::new("total_counts", DataType::Float64, false));
    Arc::new(Schema::new(fields))
}

/// var: `gene_id` ("ENSG00000000001" for gene 0) and `gene_symbol` ("GENE1").
pub(crate) fn var_batch(genes: u32) -> Result<RecordBatch, ArrowError> {
    let schema = Schema::new(vec![
        Field::new(GENE_ID, DataType::Utf8, false),
        Field::new(GENE_SYMBOL, DataType::Utf8, false),
    ]);
    let ids = StringArray::from_iter_values((1..=u64::from(genes)).map(|g| format!("ENSG{g:011}")));
    let symbols = StringArray::from_iter_values((1..=u64::from(genes)).map(|g| format!("GENE{g}")));
    RecordBatch::try_new(Arc::new(schema), vec![Arc::new(ids), Arc::new(symbols)])
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;

    use super::*;

    #[test]
    fn cell_names_are_padded_to_the_last_cell() {
        let design = Design::new(1000, 0);
        let table = ObsTable::new(&design, 1000);
        let wells = design.wells(998, 2);
        let rows = ObsRows {
            first_cell: 998,
            wells: &wells,
            cell_lines: &[3, 4],
            n_genes: &[10, 20],
            totals: &[11.0, 25.0],
        };
        let batch = table.batch(&design, &rows).unwrap();
        let names = batch.column(0).as_string::<i32>();
        assert_eq!(names.value(0), "cell_998");
        assert_eq!(names.value(1), "cell_999");
        assert_eq!(
            ObsTable::new(&design, 1001)
                .names(5, 1)
                .as_string::<i32>()
                .value(0),
            "cell_0005"
        );
        assert_eq!(
            ObsTable::new(&design, 1)
                .names(0, 1)
                .as_string::<i32>()
                .value(0),
            "cell_0"
        );
    }

    #[test]
    fn gene_ids_look_like_ensembl() {
        let var = var_batch(3).unwrap();
        assert_eq!(var.column(0).as_string::<i32>().value(0), "ENSG00000000001");
        assert_eq!(var.column(1).as_string::<i32>().value(2), "GENE3");
    }
}
