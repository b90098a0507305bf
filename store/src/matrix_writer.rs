//! Writes `matrix.arrow`: rows of cells gathered into record batches of
//! exactly `cells_per_batch` cells, values narrowed to the dataset's type.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::types::{Float32Type, Float64Type, UInt16Type, UInt32Type, UInt8Type};
use arrow_array::{ArrayRef, ArrowPrimitiveType, ListArray, PrimitiveArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{Field, SchemaRef};
use cellflight_schemas::{matrix_schema, IndexType, ValueType};

use crate::{StoreError, VERSION_METADATA_KEY};

pub(crate) struct MatrixWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: FileWriter<BufWriter<File>>,
    index_type: IndexType,
    value_type: ValueType,
    cells_per_batch: usize,
    pending: PendingBatch,
    batches_written: u64,
}

/// The cells of the batch being filled.
#[derive(Default)]
struct PendingBatch {
    offsets: Vec<i32>,
    indices: Vec<u32>,
    values: Vec<f64>,
}

impl PendingBatch {
    fn cells(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }
}

impl MatrixWriter {
    pub(crate) fn create(
        path: &Path,
        n_genes: u64,
        value_type: ValueType,
        cells_per_batch: u32,
        version: &str,
    ) -> Result<Self, StoreError> {
        let index_type = IndexType::for_gene_count(n_genes);
        let schema = matrix_schema(index_type, value_type);
        let metadata = [(VERSION_METADATA_KEY.to_owned(), version.to_owned())];
        let schema = Arc::new(schema.with_metadata(metadata.into()));
        let file = File::create(path).map_err(StoreError::io(path))?;
        let writer = FileWriter::try_new(BufWriter::with_capacity(1 << 20, file), &schema)
            .map_err(StoreError::arrow(path))?;
        Ok(Self {
            path: path.to_owned(),
            schema,
            writer,
            index_type,
            value_type,
            cells_per_batch: cells_per_batch as usize,
            pending: PendingBatch {
                offsets: vec![0],
                ..Default::default()
            },
            batches_written: 0,
        })
    }

    pub(crate) fn cells_per_batch(&self) -> u32 {
        self.cells_per_batch as u32
    }

    pub(crate) fn value_type(&self) -> ValueType {
        self.value_type
    }

    pub(crate) fn index_type(&self) -> IndexType {
        self.index_type
    }

    /// Adds one cell; its entries are already sorted, in range and non-zero.
    pub(crate) fn push_cell(&mut self, indices: &[u32], values: &[f64]) -> Result<(), StoreError> {
        let pending = &mut self.pending;
        pending.indices.extend_from_slice(indices);
        pending.values.extend_from_slice(values);
        let end = i32::try_from(pending.indices.len()).map_err(|_| {
            StoreError::InvalidInput(format!(
                "{} cells hold more than 2^31 non-zeros; lower cells_per_batch",
                self.cells_per_batch
            ))
        })?;
        pending.offsets.push(end);
        if pending.cells() == self.cells_per_batch {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<(), StoreError> {
        let pending = std::mem::take(&mut self.pending);
        self.pending.offsets.push(0);
        let offsets = OffsetBuffer::new(ScalarBuffer::from(pending.offsets));
        let indices = self.index_array(pending.indices);
        let values = narrow_values(self.value_type, &pending.values);
        let columns = [indices, values].map(|items| {
            let item = Field::new("item", items.data_type().clone(), false);
            Arc::new(ListArray::new(Arc::new(item), offsets.clone(), items, None)) as ArrayRef
        });
        let batch = RecordBatch::try_new(self.schema.clone(), columns.to_vec())
            .map_err(StoreError::arrow(&self.path))?;
        self.writer
            .write(&batch)
            .map_err(StoreError::arrow(&self.path))?;
        self.batches_written += 1;
        Ok(())
    }

    fn index_array(&self, indices: Vec<u32>) -> ArrayRef {
        match self.index_type {
            IndexType::UInt16 => {
                // In range: the writer checked every index against n_genes ≤ 65,536.
                let narrow: Vec<u16> = indices.into_iter().map(|i| i as u16).collect();
                Arc::new(PrimitiveArray::<UInt16Type>::from(narrow))
            }
            IndexType::UInt32 => Arc::new(PrimitiveArray::<UInt32Type>::from(indices)),
        }
    }

    /// Writes the last, short batch and the file footer; returns the batch count.
    pub(crate) fn finish(mut self) -> Result<(u64, File), StoreError> {
        if self.pending.cells() > 0 {
            self.flush_batch()?;
        }
        self.writer
            .finish()
            .map_err(StoreError::arrow(&self.path))?;
        let file = self
            .writer
            .into_inner()
            .map_err(StoreError::arrow(&self.path))?
            .into_inner()
            .map_err(|e| StoreError::io(&self.path)(e.into_error()))?;
        Ok((self.batches_written, file))
    }
}

/// Converts values to the dataset's type; the writer checked each one fits.
fn narrow_values(value_type: ValueType, values: &[f64]) -> ArrayRef {
    match value_type {
        ValueType::UInt8 => narrow::<UInt8Type>(values, |v| v as u8),
        ValueType::UInt16 => narrow::<UInt16Type>(values, |v| v as u16),
        ValueType::UInt32 => narrow::<UInt32Type>(values, |v| v as u32),
        ValueType::Float32 => narrow::<Float32Type>(values, |v| v as f32),
        ValueType::Float64 => narrow::<Float64Type>(values, |v| v),
    }
}

fn narrow<T: ArrowPrimitiveType>(values: &[f64], to: impl Fn(f64) -> T::Native) -> ArrayRef {
    let narrowed: Vec<T::Native> = values.iter().map(|&v| to(v)).collect();
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(narrowed), None))
}
