//! From a fetch's cells, read as zero-copy slices of the stored matrix, to
//! minibatches in the stream's output form: stored CSR rows copied once;
//! or with a gene selection, a transform, or dense rows, computed row by
//! row, one minibatch at a time.

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
use cellflight_schemas::{Format, IndexType, MinibatchLayout, Transform, ValueType};

use crate::columns::CachedColumn;
use crate::error::EngineError;
use crate::genes::GeneSpace;
use crate::ipc::{values_bytes, MessageBody};
use crate::rows::FetchRows;

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
}

/// Gene indices and values, side by side: of a stored slice, or of a row.
type Entries<'a, I, V> = (&'a [I], &'a [V]);

/// The stored rows one minibatch picks from a fetch, in batch order.
struct Picked<'a> {
    rows: &'a FetchRows,
    /// Per cell: (slice, first entry, entries), as in [`FetchRows`].
    entries: Vec<(u32, u32, u32)>,
    /// Entries in all.
    nnz: usize,
}

impl<'a> Picked<'a> {
    fn new(rows: &'a FetchRows, read_indices: &[u32]) -> Self {
        let entries: Vec<(u32, u32, u32)> = read_indices
            .iter()
            .map(|&i| rows.entries[i as usize])
            .collect();
        let nnz = entries.iter().map(|&(_, _, len)| len as usize).sum();
        Self { rows, entries, nnz }
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
        let picked = Picked::new(rows, picks);
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
        let scale = self.transform.map(ValueScale::new);
        match self.layout.format {
            Format::Csr if self.genes.is_all() && scale.is_none() => {
                csr_stored::<I, V>(cells, picked.nnz, body);
            }
            Format::Csr => {
                for column in self.csr_computed::<I, V>(cells, scale)? {
                    body.array(column.as_ref())?;
                }
            }
            Format::Dense => {
                let n_cells = picked.entries.len();
                body.array(self.dense::<I, V>(cells, n_cells, scale).as_ref())?
            }
        }
        Ok(())
    }

    /// CSR rows with a gene selection or a transform applied.
    fn csr_computed<'a, I, V>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        scale: Option<ValueScale>,
    ) -> Result<Vec<ArrayRef>, EngineError>
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
    {
        let mut offsets = vec![0i32];
        let mut indices: Vec<u32> = Vec::new();
        let mut stored: Vec<V::Native> = Vec::new();
        let mut scaled: Vec<f32> = Vec::new();
        let mut entries: Vec<(u32, V::Native)> = Vec::new();
        for (row_indices, row_values) in cells {
            self.select(row_indices, row_values, &mut entries);
            indices.extend(entries.iter().map(|&(gene, _)| gene));
            match &scale {
                None => stored.extend(entries.iter().map(|&(_, v)| v)),
                Some(scale) => {
                    let factor = scale.factor(row_values);
                    scaled.extend(entries.iter().map(|&(_, v)| scale.apply(v, factor)));
                }
            }
            offsets.push(indices.len() as i32);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let indices = narrow_indices(indices, self.layout.index_type())?;
        let values: ArrayRef = match scale {
            None => Arc::new(PrimitiveArray::<V>::new(stored.into(), None)),
            Some(_) => Arc::new(PrimitiveArray::<Float32Type>::new(scaled.into(), None)),
        };
        Ok(vec![list(offsets.clone(), indices), list(offsets, values)])
    }

    /// Dense rows over the output gene space, built for this minibatch only.
    fn dense<'a, I, V>(
        &self,
        cells: impl Iterator<Item = Entries<'a, I::Native, V::Native>>,
        n_cells: usize,
        scale: Option<ValueScale>,
    ) -> ArrayRef
    where
        I: ArrowPrimitiveType,
        V: ArrowPrimitiveType,
        I::Native: GeneIndex,
        V::Native: StoredValue,
    {
        let width = self.layout.n_genes as usize;
        let mut x = vec![0f32; n_cells * width];
        let mut entries: Vec<(u32, V::Native)> = Vec::new();
        for (row, (row_indices, row_values)) in cells.enumerate() {
            self.select(row_indices, row_values, &mut entries);
            let out = &mut x[row * width..(row + 1) * width];
            match &scale {
                None => entries
                    .iter()
                    .for_each(|&(gene, v)| out[gene as usize] = v.to_f64() as f32),
                Some(scale) => {
                    let factor = scale.factor(row_values);
                    for &(gene, v) in &entries {
                        out[gene as usize] = scale.apply(v, factor);
                    }
                }
            }
        }
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let values = Arc::new(PrimitiveArray::<Float32Type>::new(x.into(), None));
        Arc::new(FixedSizeListArray::new(item, width as i32, values, None))
    }

    /// A row's entries in the output gene space, sorted by output position.
    fn select<G: GeneIndex, W: Copy>(&self, indices: &[G], values: &[W], out: &mut Vec<(u32, W)>) {
        out.clear();
        out.extend(
            indices
                .iter()
                .zip(values)
                .filter_map(|(&g, &v)| self.genes.position(g.gene()).map(|p| (p, v))),
        );
        if !self.genes.keeps_order() {
            out.sort_unstable_by_key(|&(gene, _)| gene);
        }
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

fn list(offsets: OffsetBuffer<i32>, items: ArrayRef) -> ArrayRef {
    let item = Arc::new(Field::new("item", items.data_type().clone(), false));
    Arc::new(ListArray::new(item, offsets, items, None))
}

/// Output positions in the narrowest type of the output space.
fn narrow_indices(indices: Vec<u32>, index_type: IndexType) -> Result<ArrayRef, EngineError> {
    let wide = PrimitiveArray::<UInt32Type>::new(indices.into(), None);
    Ok(match index_type {
        IndexType::UInt32 => Arc::new(wide),
        IndexType::UInt16 => arrow_cast::cast(&wide, &DataType::UInt16)?,
    })
}

/// A stored gene index.
trait GeneIndex: ArrowNativeType {
    fn gene(self) -> u32;
}

impl GeneIndex for u16 {
    fn gene(self) -> u32 {
        u32::from(self)
    }
}

impl GeneIndex for u32 {
    fn gene(self) -> u32 {
        self
    }
}

/// A stored expression value.
trait StoredValue: ArrowNativeType {
    fn to_f64(self) -> f64;
}

macro_rules! stored_value {
    ($($t:ty),*) => {$(
        impl StoredValue for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
        }
    )*};
}
stored_value!(u8, u16, u32, f32, f64);

/// A transform, computed in f64 and rounded once to f32.
struct ValueScale {
    normalize_total: Option<f64>,
    log1p: bool,
}

impl ValueScale {
    fn new(transform: Transform) -> Self {
        Self {
            normalize_total: transform.normalize_total,
            log1p: transform.log1p,
        }
    }

    /// The factor a row's values are multiplied by: target / the row's
    /// total over all stored genes (a row with total 0 has no entries).
    fn factor<W: StoredValue>(&self, row_values: &[W]) -> f64 {
        match self.normalize_total {
            None => 1.0,
            Some(target) => {
                let total: f64 = row_values.iter().map(|&v| v.to_f64()).sum();
                if total > 0.0 {
                    target / total
                } else {
                    0.0
                }
            }
        }
    }

    #[inline]
    fn apply<W: StoredValue>(&self, value: W, factor: f64) -> f32 {
        let scaled = value.to_f64() * factor;
        (if self.log1p { scaled.ln_1p() } else { scaled }) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transform_normalises_over_the_whole_row_then_takes_log1p() {
        let scale = ValueScale::new(Transform {
            normalize_total: Some(100.0),
            log1p: true,
        });
        let row = [1u16, 3];
        let factor = scale.factor(&row);
        assert_eq!(factor, 25.0);
        assert_eq!(scale.apply(3u16, factor), (75f64).ln_1p() as f32);
        let empty: [u16; 0] = [];
        assert_eq!(scale.factor(&empty), 0.0);
    }
}
