//! One metadata column read whole, for a server to hold in memory: the
//! obs columns it attaches to minibatches, the gene names it resolves.
//! Categorical columns come back coded against the manifest's full
//! category list, not Parquet's per-row-group dictionaries.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Int32Array, StringArray};
use arrow_schema::{DataType, Field, FieldRef};
use cellflight_schemas::Categorical;
use parquet::arrow::ProjectionMask;

use crate::{Dataset, StoreError};

/// The two metadata tables of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Cells,
    Genes,
}

impl Table {
    pub fn name(self) -> &'static str {
        match self {
            Table::Cells => "cells",
            Table::Genes => "genes",
        }
    }
}

/// Rows per batch while reading a column.
const READ_BATCH_ROWS: usize = 65_536;

impl Dataset {
    /// Column `name` of `table`, all rows in order, with its field.
    pub fn column(&self, table: Table, name: &str) -> Result<(FieldRef, ArrayRef), StoreError> {
        let (file, layout) = match table {
            Table::Cells => (self.cells_table(), &self.manifest().cells),
            Table::Genes => (self.genes_table(), &self.manifest().genes),
        };
        let path = self.dir().join(&layout.file);
        let Ok(index) = file.schema().index_of(name) else {
            return Err(StoreError::UnknownColumn {
                table: table.name(),
                column: name.to_string(),
                columns: file
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
            });
        };
        let field = file.schema().fields()[index].clone();
        let builder = file.reader();
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(StoreError::parquet(&path))?;
        let mut chunks = Vec::new();
        for batch in reader {
            chunks.push(batch.map_err(StoreError::arrow(&path))?.column(0).clone());
        }
        let categorical = layout.categoricals.iter().find(|c| c.column == name);
        let array = match categorical {
            Some(categorical) => recode(&chunks, categorical).map_err(StoreError::arrow(&path))?,
            None => concat(&chunks, field.data_type()).map_err(StoreError::arrow(&path))?,
        };
        let ordered = categorical.is_some_and(|c| c.ordered);
        let field = Field::new(name, array.data_type().clone(), field.is_nullable())
            .with_dict_is_ordered(ordered);
        Ok((Arc::new(field), array))
    }
}

fn concat(chunks: &[ArrayRef], data_type: &DataType) -> Result<ArrayRef, arrow_schema::ArrowError> {
    if chunks.is_empty() {
        return Ok(arrow_array::new_empty_array(data_type));
    }
    let chunks: Vec<&dyn Array> = chunks.iter().map(|c| c.as_ref()).collect();
    arrow_select::concat::concat(&chunks)
}

/// Dictionary chunks (any dictionaries) as one `Dictionary<Int32, Utf8>`
/// whose values are the manifest's categories, so a code is the same in
/// every minibatch and every cohort.
fn recode(
    chunks: &[ArrayRef],
    categorical: &Categorical,
) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let codes: HashMap<&str, i32> = categorical
        .categories
        .iter()
        .enumerate()
        .map(|(code, category)| (category.as_str(), code as i32))
        .collect();
    let mut keys: Vec<Option<i32>> = Vec::new();
    for chunk in chunks {
        let chunk = chunk.as_dictionary::<Int32Type>();
        let values = arrow_cast::cast(chunk.values(), &DataType::Utf8)?;
        let values = values.as_string::<i32>();
        // A chunk's own dictionary, translated once; a value outside the
        // manifest's list (which verify refuses) reads as missing.
        let translated: Vec<Option<i32>> = (0..values.len())
            .map(|i| {
                values
                    .is_valid(i)
                    .then(|| codes.get(values.value(i)).copied())
                    .flatten()
            })
            .collect();
        keys.extend(
            chunk
                .keys()
                .iter()
                .map(|key| key.and_then(|k| translated[k as usize])),
        );
    }
    let categories = StringArray::from_iter_values(&categorical.categories);
    let dictionary = DictionaryArray::try_new(Int32Array::from(keys), Arc::new(categories))?;
    Ok(Arc::new(dictionary))
}
