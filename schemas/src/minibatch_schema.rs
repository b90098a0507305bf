//! The Arrow schema of the minibatches a stream sends (docs/protocol.md).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Schema};

use crate::{
    Format, IndexType, TokenLayout, ValueType, ATTENTION_MASK_COLUMN, CELL_ID_COLUMN,
    INDICES_COLUMN, INPUT_IDS_COLUMN, IS_PADDING_COLUMN, VALUES_COLUMN, X_COLUMN,
};

/// Schema metadata key whose value is the width of the output gene space
/// in decimal: the number of columns of the matrix a `csr` batch is a slice
/// of (a dense batch also shows it as the size of `x`).
pub const N_GENES_METADATA_KEY: &str = "cellflight.n_genes";

/// What shapes a stream's expression columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinibatchLayout {
    pub format: Format,
    /// Genes of the output gene space.
    pub n_genes: u64,
    /// The type of `values`: the stored type, or Float32 after a transform
    /// (dense `x` is always Float32).
    pub value_type: ValueType,
    /// The token columns: `Some` exactly for format `tokens`.
    pub tokens: Option<TokenLayout>,
}

impl MinibatchLayout {
    /// The narrowest unsigned type holding a position in the gene space.
    pub fn index_type(&self) -> IndexType {
        IndexType::for_gene_count(self.n_genes)
    }

    /// The largest minibatch of `batch_size` cells in bytes, obs columns
    /// aside, when no cell stores more than `max_cell_genes` genes: a `csr`
    /// cell brings at most that many entries (and never more than the
    /// output gene space), a dense cell always the whole gene space, a
    /// `tokens` cell at most `max_length` tokens.
    pub fn max_batch_bytes(&self, batch_size: u32, max_cell_genes: u64) -> u64 {
        let per_cell = match (self.format, self.tokens) {
            (Format::Csr, _) => {
                let entry = self.index_type().byte_width() + self.value_type.byte_width();
                self.n_genes.min(max_cell_genes) * entry as u64
            }
            (Format::Dense, _) => self.n_genes * 4,
            (Format::Tokens, tokens) => tokens.map_or(0, |t| t.max_cell_bytes()),
        };
        // cell_id, is_padding and list offsets: 16 bytes a cell is ample.
        u64::from(batch_size) * (per_cell + 16)
    }
}

/// `cell_id`; `indices` and `values` (csr), `x` (dense), or the token
/// columns (`tokens`: `input_ids`, `values` for scGPT, `attention_mask`
/// when padded); `is_padding`; then `obs`, in order.
pub fn minibatch_schema(layout: &MinibatchLayout, obs: &[FieldRef]) -> Schema {
    let item = |data_type: DataType| Arc::new(Field::new("item", data_type, false));
    let list =
        |name: &str, data_type: DataType| Field::new(name, DataType::List(item(data_type)), false);
    let fixed = |name: &str, data_type: DataType, size: u32| {
        let size = i32::try_from(size).unwrap_or(i32::MAX);
        Field::new(name, DataType::FixedSizeList(item(data_type), size), false)
    };
    let mut fields = vec![Arc::new(Field::new(
        CELL_ID_COLUMN,
        DataType::UInt64,
        false,
    ))];
    match (layout.format, layout.tokens) {
        (Format::Csr, _) => {
            fields.push(Arc::new(list(INDICES_COLUMN, layout.index_type().arrow())));
            fields.push(Arc::new(list(VALUES_COLUMN, layout.value_type.arrow())));
        }
        (Format::Dense, _) => {
            let size = u32::try_from(layout.n_genes).unwrap_or(u32::MAX);
            fields.push(Arc::new(fixed(X_COLUMN, DataType::Float32, size)));
        }
        // Not planned: a tokens layout always says its columns' shape.
        (Format::Tokens, None) => {}
        (Format::Tokens, Some(tokens)) => {
            let column = |name: &str, data_type: DataType| match tokens.padded {
                true => fixed(name, data_type, tokens.max_length),
                false => list(name, data_type),
            };
            fields.push(Arc::new(column(INPUT_IDS_COLUMN, DataType::UInt32)));
            if tokens.values {
                fields.push(Arc::new(column(VALUES_COLUMN, DataType::UInt16)));
            }
            if tokens.padded {
                fields.push(Arc::new(column(ATTENTION_MASK_COLUMN, DataType::Boolean)));
            }
        }
    }
    fields.push(Arc::new(Field::new(
        IS_PADDING_COLUMN,
        DataType::Boolean,
        false,
    )));
    fields.extend(obs.iter().cloned());
    let metadata = HashMap::from([(N_GENES_METADATA_KEY.to_string(), layout.n_genes.to_string())]);
    Schema::new_with_metadata(fields, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_columns_take_the_narrowest_index_type_and_obs_come_last() {
        let layout = MinibatchLayout {
            format: Format::Csr,
            n_genes: 70_000,
            value_type: ValueType::UInt16,
            tokens: None,
        };
        let obs = [Arc::new(Field::new("plate", DataType::Utf8, true))];
        let schema = minibatch_schema(&layout, &obs);
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["cell_id", "indices", "values", "is_padding", "plate"]
        );
        let DataType::List(item) = schema.field(1).data_type() else {
            panic!("indices is a list")
        };
        assert_eq!(item.data_type(), &DataType::UInt32);
        assert_eq!(schema.metadata()[N_GENES_METADATA_KEY], "70000");
    }

    #[test]
    fn dense_rows_are_fixed_size_float32_lists() {
        let layout = MinibatchLayout {
            format: Format::Dense,
            n_genes: 100,
            value_type: ValueType::Float32,
            tokens: None,
        };
        let schema = minibatch_schema(&layout, &[]);
        assert!(matches!(
            schema.field(1).data_type(),
            DataType::FixedSizeList(_, 100)
        ));
        assert_eq!(layout.max_batch_bytes(64, 7), 64 * (100 * 4 + 16));
    }

    #[test]
    fn padded_tokens_are_fixed_size_rows_with_a_mask_and_ragged_ones_lists() {
        let tokens = |padded, values| MinibatchLayout {
            format: Format::Tokens,
            n_genes: 500,
            value_type: ValueType::Float32,
            tokens: Some(TokenLayout {
                max_length: 8,
                padded,
                values,
            }),
        };
        let names = |layout: &MinibatchLayout| -> Vec<String> {
            let schema = minibatch_schema(layout, &[]);
            schema.fields().iter().map(|f| f.name().clone()).collect()
        };
        let scgpt = tokens(true, true);
        assert_eq!(
            names(&scgpt),
            [
                "cell_id",
                "input_ids",
                "values",
                "attention_mask",
                "is_padding"
            ]
        );
        let schema = minibatch_schema(&scgpt, &[]);
        assert!(matches!(
            schema.field(2).data_type(),
            DataType::FixedSizeList(item, 8) if item.data_type() == &DataType::UInt16
        ));
        // 4 bytes an id, 2 a bin, 1 (ample) a mask bit.
        assert_eq!(scgpt.max_batch_bytes(10, 5_000), 10 * (8 * 7 + 16));
        let ragged = tokens(false, false);
        assert_eq!(names(&ragged), ["cell_id", "input_ids", "is_padding"]);
        assert!(matches!(
            minibatch_schema(&ragged, &[]).field(1).data_type(),
            DataType::List(item) if item.data_type() == &DataType::UInt32
        ));
    }

    #[test]
    fn a_csr_cell_brings_at_most_its_stored_genes_within_the_gene_space() {
        let layout = MinibatchLayout {
            format: Format::Csr,
            n_genes: 1_000,
            value_type: ValueType::Float32,
            tokens: None,
        };
        // u16 indices and f32 values: 6 bytes an entry.
        assert_eq!(layout.max_batch_bytes(10, 50), 10 * (50 * 6 + 16));
        assert_eq!(layout.max_batch_bytes(10, 5_000), 10 * (1_000 * 6 + 16));
    }
}
