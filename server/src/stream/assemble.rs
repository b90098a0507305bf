//! From a planned fetch to minibatches: the fetch's cells read as runs of
//! consecutive ids (zero-copy slices of the stored batches), then each
//! minibatch taken from them in its shuffled order.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::interleave::interleave;
use cellflight_sampler::Fetch;
use cellflight_store::Matrix;

use crate::error::ServiceError;

/// `cell_id`, the matrix's `indices` and `values`, `is_padding`.
pub fn minibatch_schema(matrix: &Schema) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new("cell_id", DataType::UInt64, false))];
    fields.extend(matrix.fields().iter().cloned());
    fields.push(Arc::new(Field::new("is_padding", DataType::Boolean, false)));
    Arc::new(Schema::new(fields))
}

pub struct FetchReader<'a> {
    matrix: &'a Matrix,
    schema: SchemaRef,
}

impl<'a> FetchReader<'a> {
    pub fn new(matrix: &'a Matrix) -> Self {
        Self {
            schema: minibatch_schema(matrix.schema()),
            matrix,
        }
    }

    /// The fetch's minibatches with their indices. The cohort is every cell
    /// of the dataset, so cohort positions are cell ids.
    pub fn minibatches(&self, fetch: &Fetch) -> Result<Vec<(u64, RecordBatch)>, ServiceError> {
        let cells = fetch.read_order();
        let slices = self.read(cells)?;
        // Where each read row sits: (slice, row in slice). Minibatch rows are
        // copied once, straight from the memory-mapped slices.
        let locations: Vec<(usize, usize)> = slices
            .iter()
            .enumerate()
            .flat_map(|(slice, rows)| (0..rows.num_rows()).map(move |row| (slice, row)))
            .collect();
        fetch
            .batches()
            .map(|batch| {
                let picks: Vec<(usize, usize)> = batch
                    .read_indices
                    .iter()
                    .map(|&i| locations[i as usize])
                    .collect();
                let ids = batch.read_indices.iter().map(|&i| cells[i as usize]);
                let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(ids))];
                for column in 0..self.matrix.schema().fields().len() {
                    let sources: Vec<&dyn Array> =
                        slices.iter().map(|s| s.column(column).as_ref()).collect();
                    columns.push(interleave(&sources, &picks)?);
                }
                columns.push(Arc::new(BooleanArray::from(batch.is_padding.to_vec())));
                Ok((
                    batch.index,
                    RecordBatch::try_new(self.schema.clone(), columns)?,
                ))
            })
            .collect()
    }

    /// Rows of `cells` (sorted ids), in that order: zero-copy slices, a run
    /// of consecutive ids at a time.
    fn read(&self, cells: &[u64]) -> Result<Vec<RecordBatch>, ServiceError> {
        let mut slices = Vec::new();
        for run in runs(cells) {
            slices.extend(self.matrix.cells(run)?);
        }
        Ok(slices)
    }
}

/// Sorted ids as ranges of consecutive ids.
fn runs(sorted: &[u64]) -> Vec<std::ops::Range<u64>> {
    let mut runs: Vec<std::ops::Range<u64>> = Vec::new();
    for &id in sorted {
        match runs.last_mut() {
            Some(run) if run.end == id => run.end += 1,
            _ => runs.push(id..id + 1),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn consecutive_ids_coalesce_into_runs() {
        assert_eq!(runs(&[3, 4, 5, 9, 10, 12]), vec![3..6, 9..11, 12..13]);
        assert!(runs(&[]).is_empty());
    }
}
