//! `inspect --verify`: every promise of the format, checked against the
//! files themselves (the matrix re-read cell by cell, statistics recomputed).

use std::fmt;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use cellflight_schemas::{matrix_schema, Categorical, MatrixLayout};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::stats::GeneStats;
use crate::*;

/// One way in which a dataset breaks its format.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault(pub String);

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the dataset at `dir`; an empty list means it is whole and sound.
pub fn verify(dir: &Path) -> Result<Vec<Fault>, StoreError> {
    let dataset = Dataset::open(dir)?;
    let mut checker = Checker::new(&dataset);
    if let (Some(matrix), Some(layout)) = (dataset.matrix(), &dataset.manifest().matrix) {
        checker.check_matrix(matrix, layout)?;
    }
    checker.check_cells(&dataset)?;
    checker.check_genes(&dataset)?;
    Ok(checker.faults)
}

struct Checker {
    n_cells: u64,
    n_genes: u64,
    has_matrix: bool,
    nnz: u64,
    /// Per cell, recomputed from the matrix.
    cell_n_genes: Vec<u32>,
    cell_totals: Vec<f64>,
    gene_stats: GeneStats,
    faults: Vec<Fault>,
}

/// One of the two Parquet tables, as the manifest describes it.
struct Table<'a> {
    dir: &'a Path,
    file: &'static str,
    id: &'static str,
    categoricals: &'a [Categorical],
    rows: u64,
}

/// Faults past this many are counted, not listed.
const MAX_LISTED: usize = 20;

impl Checker {
    fn new(dataset: &Dataset) -> Self {
        let manifest = dataset.manifest();
        Self {
            n_cells: manifest.n_cells,
            n_genes: manifest.n_genes,
            has_matrix: manifest.matrix.is_some(),
            nnz: manifest.nnz,
            cell_n_genes: Vec::new(),
            cell_totals: Vec::new(),
            gene_stats: GeneStats::new(manifest.n_genes as usize),
            faults: Vec::new(),
        }
    }

    fn fault(&mut self, text: String) {
        if self.faults.len() < MAX_LISTED {
            self.faults.push(Fault(text));
        }
    }

    fn check_matrix(&mut self, matrix: &Matrix, layout: &MatrixLayout) -> Result<(), StoreError> {
        let expected = matrix_schema(layout.index_type, layout.value_type);
        if matrix.schema().fields() != expected.fields() {
            self.fault(format!(
                "{MATRIX_FILE}: schema {:?} is not the manifest's {:?}",
                matrix.schema().fields(),
                expected.fields()
            ));
            return Ok(());
        }
        if matrix.n_batches() as u64 != layout.n_batches {
            self.fault(format!(
                "{MATRIX_FILE}: {} batches, manifest says {}",
                matrix.n_batches(),
                layout.n_batches
            ));
            return Ok(());
        }
        let mut nnz = 0;
        for index in 0..matrix.n_batches() {
            let batch = match matrix.batch(index) {
                Ok(batch) => batch,
                Err(e) => {
                    self.fault(format!("{MATRIX_FILE}: batch {index}: {e}"));
                    return Ok(());
                }
            };
            self.check_batch_length(index, batch, layout);
            nnz += self.check_cells_of(batch);
        }
        let stored_cells = self.cell_n_genes.len() as u64;
        if stored_cells != self.n_cells {
            self.fault(format!(
                "{MATRIX_FILE}: {stored_cells} cells, manifest says {}",
                self.n_cells
            ));
        }
        if nnz != self.nnz {
            self.fault(format!(
                "{MATRIX_FILE}: {nnz} entries, manifest says {}",
                self.nnz
            ));
        }
        Ok(())
    }

    fn check_batch_length(&mut self, index: usize, batch: &RecordBatch, layout: &MatrixLayout) {
        let is_last = index as u64 + 1 == layout.n_batches;
        let full = layout.cells_per_batch as usize;
        let rows = batch.num_rows();
        if (!is_last && rows != full) || rows == 0 || rows > full {
            self.fault(format!(
                "{MATRIX_FILE}: batch {index} holds {rows} cells, expected {full} (fewer only in the last)"
            ));
        }
    }

    /// Checks each cell's entries and accumulates its statistics; returns the entries seen.
    fn check_cells_of(&mut self, batch: &RecordBatch) -> u64 {
        let indices = batch.column(0).as_list::<i32>();
        let values = batch.column(1).as_list::<i32>();
        let mut entries = 0;
        for row in 0..batch.num_rows() {
            let cell = self.cell_n_genes.len() as u64;
            let genes = to_u32(&indices.value(row));
            let row_values = to_f64(&values.value(row));
            if genes.len() != row_values.len() {
                self.fault(format!(
                    "{MATRIX_FILE}: cell {cell} has {} indices and {} values",
                    genes.len(),
                    row_values.len()
                ));
            }
            self.check_row(cell, &genes, &row_values);
            entries += genes.len() as u64;
        }
        entries
    }

    fn check_row(&mut self, cell: u64, genes: &[u32], values: &[f64]) {
        if genes.windows(2).any(|w| w[0] >= w[1]) {
            self.fault(format!(
                "{MATRIX_FILE}: gene indices of cell {cell} are not strictly increasing"
            ));
        }
        if let Some(gene) = genes.iter().find(|&&g| u64::from(g) >= self.n_genes) {
            self.fault(format!(
                "{MATRIX_FILE}: cell {cell} has gene index {gene} ≥ n_genes {}",
                self.n_genes
            ));
            return;
        }
        if values.contains(&0.0) {
            self.fault(format!(
                "{MATRIX_FILE}: cell {cell} stores an explicit zero"
            ));
        }
        for (&gene, &value) in genes.iter().zip(values) {
            self.gene_stats.add(gene as usize, value);
        }
        self.cell_n_genes.push(genes.len() as u32);
        self.cell_totals.push(values.iter().sum());
    }

    fn check_cells(&mut self, dataset: &Dataset) -> Result<(), StoreError> {
        let table = Table {
            dir: dataset.dir(),
            file: CELLS_FILE,
            id: CELL_ID,
            categoricals: &dataset.manifest().cells.categoricals,
            rows: self.n_cells,
        };
        let has_matrix = self.has_matrix;
        self.check_table(dataset.cells(), table, |checker, first, batch| {
            if has_matrix {
                checker.check_cell_stats(first, batch);
            }
        })
    }

    fn check_genes(&mut self, dataset: &Dataset) -> Result<(), StoreError> {
        let table = Table {
            dir: dataset.dir(),
            file: GENES_FILE,
            id: GENE_IDX,
            categoricals: &dataset.manifest().genes.categoricals,
            rows: self.n_genes,
        };
        let means = self.gene_stats.means(self.n_cells);
        let variances = self.gene_stats.variances(self.n_cells);
        let has_matrix = self.has_matrix;
        self.check_table(dataset.genes(), table, |checker, first, batch| {
            if has_matrix {
                checker.check_gene_stats(first, batch, &means, &variances);
            }
        })
    }

    /// Walks a table once: ids, categoricals, then `check_stats(first row, batch)`.
    fn check_table(
        &mut self,
        reader: ParquetRecordBatchReaderBuilder<TableFile>,
        table: Table<'_>,
        mut check_stats: impl FnMut(&mut Self, usize, &RecordBatch),
    ) -> Result<(), StoreError> {
        let path = &table.dir.join(table.file);
        let mut next_id = 0u64;
        for batch in reader.build().map_err(StoreError::parquet(path))? {
            let batch = batch.map_err(StoreError::arrow(path))?;
            self.check_ids(table.file, table.id, next_id, &batch);
            self.check_categoricals(table.file, table.categoricals, &batch);
            check_stats(self, next_id as usize, &batch);
            next_id += batch.num_rows() as u64;
        }
        if next_id != table.rows {
            self.fault(format!(
                "{}: {next_id} rows, manifest says {}",
                table.file, table.rows
            ));
        }
        Ok(())
    }

    fn check_cell_stats(&mut self, first: usize, batch: &RecordBatch) {
        let n_genes = column::<UInt32Type>(batch, STAT_N_GENES);
        let totals = column::<Float64Type>(batch, STAT_TOTAL);
        let (Some(n_genes), Some(totals)) = (n_genes, totals) else {
            self.fault(format!(
                "{CELLS_FILE}: {STAT_N_GENES} or {STAT_TOTAL} missing or mistyped"
            ));
            return;
        };
        let end = (first + batch.num_rows()).min(self.cell_n_genes.len());
        for cell in first..end {
            let row = cell - first;
            if n_genes.value(row) != self.cell_n_genes[cell]
                || !same(totals.value(row), self.cell_totals[cell])
            {
                self.fault(format!(
                    "{CELLS_FILE}: statistics of cell {cell} differ from its matrix row"
                ));
            }
        }
    }

    fn check_gene_stats(
        &mut self,
        first: usize,
        batch: &RecordBatch,
        means: &[f64],
        variances: &[f64],
    ) {
        let n_cells = column::<UInt64Type>(batch, STAT_N_CELLS);
        let mean = column::<Float64Type>(batch, STAT_MEAN);
        let variance = column::<Float64Type>(batch, STAT_VARIANCE);
        let (Some(n_cells), Some(mean), Some(variance)) = (n_cells, mean, variance) else {
            self.fault(format!("{GENES_FILE}: gene statistics missing or mistyped"));
            return;
        };
        let counts = self.gene_stats.n_cells();
        let end = (first + batch.num_rows()).min(means.len());
        for gene in first..end {
            let row = gene - first;
            let agrees = n_cells.value(row) == counts[gene]
                && same(mean.value(row), means[gene])
                && same(variance.value(row), variances[gene]);
            if !agrees {
                self.fault(format!(
                    "{GENES_FILE}: statistics of gene {gene} differ from the matrix"
                ));
            }
        }
    }

    fn check_ids(&mut self, file: &str, name: &str, first: u64, batch: &RecordBatch) {
        let ids = batch.column_by_name(name).map(to_u64);
        let expected = first..first + batch.num_rows() as u64;
        if ids.as_deref() != Some(&expected.collect::<Vec<_>>()[..]) {
            self.fault(format!(
                "{file}: {name} is not 0, 1, 2, ... from row {first}"
            ));
        }
    }

    fn check_categoricals(
        &mut self,
        file: &str,
        categoricals: &[Categorical],
        batch: &RecordBatch,
    ) {
        for categorical in categoricals {
            let Some(column) = batch.column_by_name(&categorical.column) else {
                self.fault(format!(
                    "{file}: categorical column {:?} is missing",
                    categorical.column
                ));
                continue;
            };
            let DataType::Dictionary(_, _) = column.data_type() else {
                self.fault(format!(
                    "{file}: column {:?} is not dictionary-encoded",
                    categorical.column
                ));
                continue;
            };
            let strings = arrow_select::take::take(
                column.as_any_dictionary().values(),
                column.as_any_dictionary().keys(),
                None,
            );
            let Ok(strings) = strings else { continue };
            let Some(strings) = strings.as_string_opt::<i32>() else {
                self.fault(format!(
                    "{file}: column {:?} is not a dictionary of strings",
                    categorical.column
                ));
                continue;
            };
            let unknown = strings
                .iter()
                .flatten()
                .find(|s| !categorical.categories.iter().any(|c| c == s));
            if let Some(value) = unknown {
                self.fault(format!(
                    "{file}: column {:?} holds {value:?}, not among the manifest's categories",
                    categorical.column
                ));
            }
        }
    }
}

fn column<'a, T: arrow_array::ArrowPrimitiveType>(
    batch: &'a RecordBatch,
    name: &str,
) -> Option<&'a arrow_array::PrimitiveArray<T>> {
    batch.column_by_name(name)?.as_primitive_opt::<T>()
}

/// Equal, or both NaN.
fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Gene indices widened to u32; the schema was checked to be u16 or u32.
fn to_u32(array: &ArrayRef) -> Vec<u32> {
    match array.data_type() {
        DataType::UInt16 => widen::<arrow_array::types::UInt16Type, u32>(array),
        _ => array.as_primitive::<UInt32Type>().values().to_vec(),
    }
}

fn to_u64(array: &ArrayRef) -> Vec<u64> {
    match array.data_type() {
        DataType::UInt64 => array.as_primitive::<UInt64Type>().values().to_vec(),
        DataType::UInt32 => widen::<UInt32Type, u64>(array),
        _ => Vec::new(),
    }
}

/// Values widened to f64 (exact for every stored type).
fn to_f64(array: &ArrayRef) -> Vec<f64> {
    use arrow_array::types::*;
    match array.data_type() {
        DataType::UInt8 => widen::<UInt8Type, f64>(array),
        DataType::UInt16 => widen::<UInt16Type, f64>(array),
        DataType::UInt32 => widen::<UInt32Type, f64>(array),
        DataType::Float32 => widen::<Float32Type, f64>(array),
        _ => widen::<Float64Type, f64>(array),
    }
}

fn widen<T, W>(array: &ArrayRef) -> Vec<W>
where
    T: arrow_array::ArrowPrimitiveType,
    W: From<T::Native>,
{
    array
        .as_primitive::<T>()
        .values()
        .iter()
        .map(|&v| W::from(v))
        .collect()
}
