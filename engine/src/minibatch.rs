//! From a fetch's cells, read as zero-copy slices of the stored matrix, to
//! minibatches in the stream's output form: stored CSR rows copied once;
//! or with a gene selection, a transform, dense rows or tokens, computed
//! row by row, one minibatch at a time.

use std::sync::Arc;

use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, UInt16Type, UInt32Type, UInt8Type,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, FixedSizeListArray, ListArray, PrimitiveArray, UInt32Array,
};
use arrow_buffer::{ArrowNativeType, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, SchemaRef};
use cellflight_sampler::Batch;
use cellflight_schemas::{IndexType, MinibatchLayout, Transform, ValueType};

use crate::columns::CachedColumn;
use crate::error::EngineError;
use crate::genes::{GeneIndex, GeneSpace};
use crate::ipc::{values_bytes, MessageBody};
use crate::rows::FetchRows;
use crate::tokens::Tokenization;
use crate::transform::{AsFloat32, AsStored, RowValues, StoredValue, Transformed};

/// What every minibatch of a stream holds, and how it is computed.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) schema: SchemaRef,
    pub(crate) layout: MinibatchLayout,
    pub(crate) genes: Arc<GeneSpace>,
    pub(crate) transform: Option<Transform>,
    pub(crate) obs: Vec<Arc<CachedColumn>>,
    /// The stored matrix's types.
    pub(crate) stored: (IndexType, ValueType),
    pub(crate) expression: ExpressionColumns,
}

/// What a minibatch holds of its cells' expression, by the stream's format.
#[derive(Debug)]
pub(crate) enum ExpressionColumns {
    /// Each cell's kept entries: gene positions and values.
    Csr,
    /// Each cell's values over the whole output gene space.
    Dense,
    /// Each cell's tokens, made as the tokenization says.
    Tokens(Tokenization),
}

/// Gene indices and values, side by side: of a stored slice, or of a row.
pub(crate) type Entries<'a, I, V> = (&'a [I], &'a [V]);

/// The stored rows one minibatch picks from a fetch, in batch order.
struct Picked<'a> {
    rows: &'a FetchRows,
    cell_ids: &'a [u64],
    /// Per cell: (slice, first entry, entries), as in [`FetchRows`].
    entries: Vec<(u32, u32, u32)>,
    /// Entries in all.
    nnz: usize,
}

impl<'a> Picked<'a> {
    fn new(rows: &'a FetchRows, cell_ids: &'a [u64], read_indices: &[u32]) -> Self {
        let entries: Vec<(u32, u32, u32)> = read_indices
            .iter()
            .map(|&i| rows.entries[i as usize])
            .collect();
        let nnz = entries.iter().map(|&(_, _, len)| len as usize).sum();
        Self {
            rows,
            cell_ids,
            entries,
            nnz,
        }
    }
}

impl Output {
    /// The IPC body of minibatch `batch` of a fetch whose cells are
    /// `rows`, columns in the order of [`Output::schema`].
    pub(crate) fn minibatch(
        &self,
        rows: &FetchRows,
        batch: &Batch,
    ) -> Result<MessageBody, EngineError> {
        let picks = batch.read_indices;
        let ids: Vec<u64> = picks.iter().map(|&i| rows.cell_ids[i as usize]).collect();
        let picked = Picked::new(rows, &ids, picks);
        let mut body = MessageBody::with_capacity(self.body_bytes(&picked));
        body.node(ids.len(), 0);
        body.no_validity();
        body.values(&ids);
        self.expression(&picked, &mut body)?;
        body.array(&BooleanArray::from(batch.is_padding.to_vec()))?;
        if !self.obs.is_empty() {
            // Cell ids fit 32 bits (the sampler's MAX_CELLS).
            let take = UInt32Array::from_iter_values(ids.iter().map(|&id| id as u32));
            for column in &self.obs {
                body.array(&arrow_select::take::take(column.array(), &take, None)?)?;
            }
        }
        Ok(body)
    }

    /// Room for the body of the `picked` rows (enough for the common CSR
    /// case; others grow as needed).
    fn body_bytes(&self, picked: &Picked) -> usize {
        let entry = self.stored.0.byte_width() + self.stored.1.byte_width();
        // Each buffer is padded to 64 bytes; 16 buffers is ample.
        picked.nnz * entry + picked.entries.len() * 24 + 16 * 64
    }

    fn expression(&self, picked: &Picked, body: &mut MessageBody) -> Result<(), EngineError> {
        use IndexType as I;
        use ValueType as V;
        match self.stored {
            (I::UInt16, V::UInt8) => self.typed::<UInt16Type, UInt8Type>(picked, body),
            (I::UInt16, V::UInt16) => self.typed::<UInt16Type, UInt16Type>(picked, body),
            (I::UInt16, V::UInt32) => self.typed::<UInt16Type, UInt32Type>(picked, body),
            (I::UInt16, V::Float32) => self.typed::<UInt16Type, Float32Type>(picked, body),
            (I::UInt16, V::Float64) => self.typed::<UInt16Type, Float64Type>(picked, body),
            (I::UInt32, V::UInt8) => self.typed::<UInt32Type, UInt8Type>(picked, body),
            (I::UInt32, V::UInt16) => self.typed::<UInt32Type, UInt16Type>(picked, body),
            (I::UInt32, V::UInt32) => self.typed::<UInt32Type, UInt32Type>(picked, body),
            (I::UInt32, V::Float32) => self.typed::<UInt32Type, Float32Type>(picked, body),
            (I::UInt32, V::Float64) => self.typed::<UInt32Type, Float64Type>(picked, body),
        }
    }

    fn typed<I, V>(&self, picked: &Picked, body: &mut MessageBody) -> Result<(), EngineError>
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
    {
        use arrow_array::cast::AsArray;
        let items: Vec<Entries<I::Native, V::Native>> = picked
            .rows
            .items
            .iter()
            .map(|(i, v)| {
                (
                    i.as_primitive::<I>().values().as_ref(),
                    v.as_primitive::<V>().values().as_ref(),
                )
            })
            .collect();
        let cells = picked.entries.iter().map(|&(slice, start, len)| {
            let (indices, values) = items[slice as usize];
            let range = start as usize..(start + len) as usize;
            (&indices[range.clone()], &values[range])
        });
        let n_cells = picked.entries.len();
        match (&self.expression, self.transform) {
            (ExpressionColumns::Tokens(tokens), transform) => {
                let ids = picked.cell_ids;
                return tokens.write::<I, V>(cells, ids, transform, &self.genes, body);
            }
            (ExpressionColumns::Csr, None) if self.genes.is_all() => {
                csr_stored::<I, V>(cells, picked.nnz, body);
            }
            (ExpressionColumns::Csr, None) => {
                self.csr_body::<I, V, _>(cells, picked.nnz, AsStored, body)?
            }
            (ExpressionColumns::Csr, Some(transform)) => {
                let transformed = Transformed::new(transform);
                self.csr_body::<I, V, _>(cells, picked.nnz, transformed, body)?
            }
            (ExpressionColumns::Dense, None) => {
                body.array(self.dense::<I, V, _>(cells, n_cells, AsFloat32).as_ref())?
            }
            (ExpressionColumns::Dense, Some(transform)) => {
                let transformed = Transformed::new(transform);
                body.array(self.dense::<I, V, _>(cells, n_cells, transformed).as_ref())?
            }
        }
        Ok(())
    }

    /// [`Output::csr_computed`]'s columns, into the message body.
    fn csr_body<'a, I, V, R>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        nnz: usize,
        row_values: R,
        body: &mut MessageBody,
    ) -> Result<(), EngineError>
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
        R: RowValues<V>,
    {
        for column in self.csr_computed::<I, V, R>(cells, nnz, row_values)? {
            body.array(column.as_ref())?;
        }
        Ok(())
    }

    /// CSR rows with a gene selection or a transform applied, each row's
    /// entries kept and transformed in one pass.
    fn csr_computed<'a, I, V, R>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        nnz: usize,
        mut row_values: R,
    ) -> Result<Vec<ArrayRef>, EngineError>
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
        R: RowValues<V>,
    {
        let mut offsets = vec![0i32];
        let mut indices: Vec<u32> = Vec::with_capacity(nnz);
        let mut values: Vec<<R::Out as ArrowPrimitiveType>::Native> = Vec::with_capacity(nnz);
        for (row_indices, row_stored) in cells {
            row_values.start_row(row_stored);
            let row_start = indices.len();
            if self.genes.is_all() {
                // Every entry kept where it is: whole rows extend the
                // columns, without a branch or a capacity check per entry.
                indices.extend(row_indices.iter().map(|&gene| gene.gene()));
                values.extend(row_stored.iter().map(|&value| row_values.value(value)));
            } else {
                self.genes
                    .for_each_kept(row_indices, row_stored, |position, value| {
                        indices.push(position);
                        values.push(row_values.value(value));
                    });
            }
            if !self.genes.keeps_order() {
                sort_by_position(&mut indices[row_start..], &mut values[row_start..]);
            }
            offsets.push(indices.len() as i32);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let indices = narrow_indices(indices, self.layout.index_type());
        let values = Arc::new(PrimitiveArray::<R::Out>::new(values.into(), None));
        Ok(vec![list(offsets.clone(), indices), list(offsets, values)])
    }

    /// Dense rows over the output gene space, built for this minibatch only.
    fn dense<'a, I, V, R>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        n_cells: usize,
        mut row_values: R,
    ) -> ArrayRef
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
        R: RowValues<V, Out = Float32Type>,
    {
        let width = self.layout.n_genes as usize;
        let mut x = vec![0f32; n_cells * width];
        for (row, (row_indices, row_stored)) in x.chunks_exact_mut(width).zip(cells) {
            row_values.start_row(row_stored);
            self.genes
                .for_each_kept(row_indices, row_stored, |position, value| {
                    row[position as usize] = row_values.value(value);
                });
        }
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(PrimitiveArray::<Float32Type>::new(x.into(), None));
        Arc::new(FixedSizeListArray::new(item, width as i32, values, None))
    }
}

/// Sorts a row's entries by output position (a gene list in another order
/// than the stored one).
fn sort_by_position<T: Copy>(positions: &mut [u32], values: &mut [T]) {
    let mut entries: Vec<(u32, T)> = positions
        .iter()
        .copied()
        .zip(values.iter().copied())
        .collect();
    entries.sort_unstable_by_key(|&(position, _)| position);
    for ((position, value), (p, v)) in entries.into_iter().zip(positions.iter_mut().zip(values)) {
        (*p, *v) = (position, value);
    }
}

/// The stored rows as they are: both lists gathered straight from the
/// memory-mapped slices into the message body (their one copy).
fn csr_stored<'a, I, V>(
    cells: impl ExactSizeIterator<Item = Entries<'a, I::Native, V::Native>> + Clone,
    nnz: usize,
    body: &mut MessageBody,
) where
    I: ArrowPrimitiveType,
    V: ArrowPrimitiveType,
{
    let rows = cells.len();
    let mut offsets = Vec::with_capacity(rows + 1);
    offsets.push(0i32);
    offsets.extend(cells.clone().scan(0i32, |end, (indices, _)| {
        *end += indices.len() as i32;
        Some(*end)
    }));
    gathered_list(
        body,
        &offsets,
        nnz,
        cells.clone().map(|(indices, _)| indices),
    );
    gathered_list(body, &offsets, nnz, cells.map(|(_, values)| values));
}

/// A list column of `rows.len()` rows whose items are `rows`, concatenated.
fn gathered_list<'a, T: ArrowNativeType>(
    body: &mut MessageBody,
    offsets: &[i32],
    items: usize,
    rows: impl Iterator<Item = &'a [T]>,
) {
    body.node(offsets.len() - 1, 0);
    body.no_validity();
    body.values(offsets);
    body.node(items, 0);
    body.no_validity();
    body.buffer_with(items * size_of::<T>(), |out| {
        for row in rows {
            out.extend_from_slice(values_bytes(row));
        }
    });
}

pub(crate) fn list(offsets: OffsetBuffer<i32>, items: ArrayRef) -> ArrayRef {
    let item = Arc::new(Field::new("item", items.data_type().clone(), false));
    Arc::new(ListArray::new(item, offsets, items, None))
}

/// Output positions in the narrowest type of the output space.
fn narrow_indices(indices: Vec<u32>, index_type: IndexType) -> ArrayRef {
    match index_type {
        IndexType::UInt32 => Arc::new(PrimitiveArray::<UInt32Type>::new(indices.into(), None)),
        IndexType::UInt16 => {
            // Exact: positions are below the output width, and the layout
            // is UInt16 only for at most 65,536 genes.
            let narrow: Vec<u16> = indices.iter().map(|&position| position as u16).collect();
            Arc::new(PrimitiveArray::<UInt16Type>::new(narrow.into(), None))
        }
    }
}
