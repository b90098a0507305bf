//! The Arrow schema of the minibatches a stream sends (docs/protocol.md).

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef, Schema};

use crate::{
    Format, IndexType, ValueType, CELL_ID_COLUMN, INDICES_COLUMN, IS_PADDING_COLUMN, VALUES_COLUMN,
    X_COLUMN,
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
}

impl MinibatchLayout {
    /// The narrowest unsigned type holding a position in the gene space.
    pub fn index_type(&self) -> IndexType {
        IndexType::for_gene_count(self.n_genes)
    }

    /// The largest minibatch of `batch_size` cells in bytes, obs columns
    /// aside, when no cell stores more than `max_cell_genes` genes: a `csr`
    /// cell brings at most that many entries (and never more than the
    /// output gene space), a dense cell always the whole gene space.
    pub fn max_batch_bytes(&self, batch_size: u32, max_cell_genes: u64) -> u64 {
        let per_cell = match self.format {
            Format::Csr => {
                let entry = self.index_type().byte_width() + self.value_type.byte_width();
                self.n_genes.min(max_cell_genes) * entry as u64
            }
            Format::Dense => self.n_genes * 4,
        };
        // cell_id, is_padding and list offsets: 16 bytes a cell is ample.
        u64::from(batch_size) * (per_cell + 16)
    }
}

/// `cell_id`; `indices` and `values` (csr) or `x` (dense); `is_padding`;
/// then `obs`, in order.
pub fn minibatch_schema(layout: &MinibatchLayout, obs: &[FieldRef]) -> Schema {
    let item = |data_type: DataType| Arc::new(Field::new("item", data_type, false));
    let list =
        |name: &str, data_type: DataType| Field::new(name, DataType::List(item(data_type)), false);
    let mut fields = vec![Arc::new(Field::new(
        CELL_ID_COLUMN,
        DataType::UInt64,
        false,
    ))];
    match layout.format {
        Format::Csr => {
            fields.push(Arc::new(list(INDICES_COLUMN, layout.index_type().arrow())));
            fields.push(Arc::new(list(VALUES_COLUMN, layout.value_type.arrow())));
        }
        Format::Dense => {
            let size = i32::try_from(layout.n_genes).unwrap_or(i32::MAX);
            let x = DataType::FixedSizeList(item(DataType::Float32), size);
            fields.push(Arc::new(Field::new(X_COLUMN, x, false)));
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
        };
        let schema = minibatch_schema(&layout, &[]);
        assert!(matches!(
            schema.field(1).data_type(),
            DataType::FixedSizeList(_, 100)
        ));
        assert_eq!(layout.max_batch_bytes(64, 7), 64 * (100 * 4 + 16));
    }

    #[test]
    fn a_csr_cell_brings_at_most_its_stored_genes_within_the_gene_space() {
        let layout = MinibatchLayout {
            format: Format::Csr,
            n_genes: 1_000,
            value_type: ValueType::Float32,
        };
        // u16 indices and f32 values: 6 bytes an entry.
        assert_eq!(layout.max_batch_bytes(10, 50), 10 * (50 * 6 + 16));
        assert_eq!(layout.max_batch_bytes(10, 5_000), 10 * (1_000 * 6 + 16));
    }
}
