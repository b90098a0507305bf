//! The token columns of one minibatch, built row by row: `input_ids`,
//! `values` (scGPT's bins) and, when rows are padded, `attention_mask`.

use std::sync::Arc;

use arrow_array::types::{UInt16Type, UInt32Type};
use arrow_array::{ArrayRef, BooleanArray, FixedSizeListArray, PrimitiveArray};
use arrow_buffer::{BooleanBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::Field;
use cellflight_schemas::TokenLayout;

use crate::minibatch::list;

/// The special tokens' ids a row may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Specials {
    pub(crate) cls: Option<u32>,
    pub(crate) eos: Option<u32>,
    /// `<pad>`'s id; only read when rows are padded.
    pub(crate) pad: u32,
}

/// A special token's value (bin) in `values`, and a pad's: as scGPT gives
/// `<cls>`, 0.
const SPECIAL_BIN: u16 = 0;

#[derive(Debug)]
pub(crate) struct TokenColumns {
    layout: TokenLayout,
    specials: Specials,
    ids: Vec<u32>,
    bins: Vec<u16>,
    mask: BooleanBufferBuilder,
    /// Ragged rows' offsets.
    offsets: Vec<i32>,
}

impl TokenColumns {
    /// Room for `rows` rows (whole rows when padded; ragged rows grow).
    pub(crate) fn new(layout: TokenLayout, specials: Specials, rows: usize) -> Self {
        let tokens = if layout.padded {
            rows * layout.max_length as usize
        } else {
            rows
        };
        Self {
            layout,
            specials,
            ids: Vec::with_capacity(tokens),
            bins: Vec::with_capacity(if layout.values { tokens } else { 0 }),
            mask: BooleanBufferBuilder::new(if layout.padded { tokens } else { 0 }),
            offsets: vec![0],
        }
    }

    /// Appends a row: `<cls>` if asked, the genes' (token id, bin), `<eos>`
    /// if asked, then, when padded, `<pad>`s up to `max_length` (bin 0,
    /// masked out). `genes` holds at most `max_length` minus the specials.
    pub(crate) fn push_row(&mut self, genes: impl Iterator<Item = (u32, u16)>) {
        let start = self.ids.len();
        let Specials { cls, eos, pad } = self.specials;
        let tokens = cls
            .map(|id| (id, SPECIAL_BIN))
            .into_iter()
            .chain(genes)
            .chain(eos.map(|id| (id, SPECIAL_BIN)));
        if self.layout.values {
            for (id, bin) in tokens {
                self.ids.push(id);
                self.bins.push(bin);
            }
        } else {
            self.ids.extend(tokens.map(|(id, _)| id));
        }
        let written = self.ids.len() - start;
        if self.layout.padded {
            let padding = self.layout.max_length as usize - written;
            self.ids.resize(self.ids.len() + padding, pad);
            if self.layout.values {
                self.bins.resize(self.bins.len() + padding, SPECIAL_BIN);
            }
            self.mask.append_n(written, true);
            self.mask.append_n(padding, false);
        }
        self.offsets.push(self.ids.len() as i32);
    }

    /// The columns, in schema order.
    pub(crate) fn finish(mut self) -> Vec<ArrayRef> {
        let ids: ArrayRef = Arc::new(PrimitiveArray::<UInt32Type>::new(self.ids.into(), None));
        let bins: ArrayRef = Arc::new(PrimitiveArray::<UInt16Type>::new(self.bins.into(), None));
        let mut columns = vec![ids];
        if self.layout.values {
            columns.push(bins);
        }
        if !self.layout.padded {
            let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
            return columns
                .into_iter()
                .map(|items| list(offsets.clone(), items))
                .collect();
        }
        columns.push(Arc::new(BooleanArray::new(self.mask.finish(), None)));
        let size = self.layout.max_length as i32;
        columns
            .into_iter()
            .map(|items| {
                let item = Arc::new(Field::new("item", items.data_type().clone(), false));
                Arc::new(FixedSizeListArray::new(item, size, items, None)) as ArrayRef
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::Array;

    use super::*;

    fn columns(padded: bool, values: bool, cls: Option<u32>, eos: Option<u32>) -> TokenColumns {
        let layout = TokenLayout {
            max_length: 4,
            padded,
            values,
        };
        TokenColumns::new(layout, Specials { cls, eos, pad: 9 }, 2)
    }

    #[test]
    fn padded_rows_have_cls_genes_eos_then_pads_masked_out() {
        let mut built = columns(true, true, Some(1), Some(2));
        built.push_row([(10, 5)].into_iter());
        built.push_row([].into_iter());
        let finished = built.finish();
        let ids = finished[0].as_fixed_size_list().values().clone();
        let ids = ids.as_primitive::<UInt32Type>().values().to_vec();
        assert_eq!(ids, [1, 10, 2, 9, 1, 2, 9, 9]);
        let bins = finished[1].as_fixed_size_list().values().clone();
        let bins = bins.as_primitive::<UInt16Type>().values().to_vec();
        assert_eq!(bins, [0, 5, 0, 0, 0, 0, 0, 0]);
        let mask = finished[2].as_fixed_size_list().values().clone();
        let mask: Vec<bool> = mask.as_boolean().iter().map(Option::unwrap).collect();
        assert_eq!(mask, [true, true, true, false, true, true, false, false]);
    }

    #[test]
    fn ragged_rows_are_lists_as_long_as_their_tokens_without_values_for_geneformer() {
        let mut built = columns(false, false, None, Some(2));
        built.push_row([(10, 0), (11, 0)].into_iter());
        built.push_row([].into_iter());
        let finished = built.finish();
        assert_eq!(finished.len(), 1, "input_ids only");
        let ids = finished[0].as_list::<i32>();
        assert_eq!(ids.value_offsets(), [0, 3, 4]);
        assert_eq!(
            ids.value(0).as_primitive::<UInt32Type>().values(),
            &[10, 11, 2]
        );
        assert_eq!(ids.len(), 2);
    }
}
