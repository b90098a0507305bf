use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

use crate::{IndexType, ValueType};

pub const INDICES_COLUMN: &str = "indices";
pub const VALUES_COLUMN: &str = "values";

/// Schema of the stored expression matrix: one row per cell, its gene
/// indices (sorted) and values as two parallel lists.
pub fn matrix_schema(index_type: IndexType, value_type: ValueType) -> Schema {
    let list = |name: &str, item: DataType| {
        let item = Field::new("item", item, false);
        Field::new(name, DataType::List(Arc::new(item)), false)
    };
    Schema::new(vec![
        list(INDICES_COLUMN, index_type.arrow()),
        list(VALUES_COLUMN, value_type.arrow()),
    ])
}
