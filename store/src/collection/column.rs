//! One column of a collection's `cells` or `genes` read whole, as
//! `Dataset::column` reads a dataset's: the members' columns one after
//! another, cast to the united type, a categorical coded against the
//! collection's category union.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    new_null_array, Array, ArrayRef, DictionaryArray, Int32Array, StringArray, UInt64Array,
};
use arrow_schema::{ArrowError, FieldRef};

use super::cells::CellSource;
use super::Collection;
use crate::{StoreError, Table};

impl Collection {
    /// Column `name` of `table`, all rows in order, with its field.
    pub fn column(&self, table: Table, name: &str) -> Result<(FieldRef, ArrayRef), StoreError> {
        match table {
            Table::Genes => self.genes_column(name),
            Table::Cells => self.cells_column(name),
        }
    }

    fn genes_column(&self, name: &str) -> Result<(FieldRef, ArrayRef), StoreError> {
        let genes = self.genes.table();
        match genes.schema().index_of(name) {
            Ok(i) => Ok((genes.schema().fields()[i].clone(), genes.column(i).clone())),
            Err(_) => Err(unknown(
                Table::Genes,
                name,
                genes.schema().fields().iter().map(|f| f.name()),
            )),
        }
    }

    fn cells_column(&self, name: &str) -> Result<(FieldRef, ArrayRef), StoreError> {
        let Some(column) = self.cells.iter().find(|c| c.field.name() == name) else {
            let names = self.cells.iter().map(|c| c.field.name());
            return Err(unknown(Table::Cells, name, names));
        };
        let array = match &column.source {
            CellSource::CellId => {
                Arc::new(UInt64Array::from_iter_values(0..self.n_cells())) as ArrayRef
            }
            CellSource::SourceDataset => {
                let keys = self.members.iter().enumerate().flat_map(|(m, member)| {
                    std::iter::repeat_n(Some(m as i32), member.manifest().n_cells as usize)
                });
                let names: Vec<String> = self
                    .members
                    .iter()
                    .map(|m| m.manifest().name.to_string())
                    .collect();
                dictionary(keys.collect(), &names).map_err(self.arrow_error())?
            }
            CellSource::Members { present } => match &column.categories {
                Some(categories) => self.categorical(&column.field, present, categories)?,
                None => self.members_column(&column.field, present)?,
            },
        };
        Ok((column.field.clone(), array))
    }

    /// A column the members hold: each member's values cast to the
    /// united type, nulls for a member without it.
    fn members_column(&self, field: &FieldRef, present: &[bool]) -> Result<ArrayRef, StoreError> {
        let data_type = field.data_type();
        let mut parts = Vec::with_capacity(self.members.len());
        for (member, &has) in self.members.iter().zip(present) {
            let n_cells = member.manifest().n_cells as usize;
            parts.push(match has {
                true => {
                    let (_, values) = member.column(Table::Cells, field.name())?;
                    arrow_cast::cast(&values, data_type).map_err(self.arrow_error())?
                }
                false => new_null_array(data_type, n_cells),
            });
        }
        let parts: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
        arrow_select::concat::concat(&parts).map_err(self.arrow_error())
    }

    /// A categorical: each member's codes translated to the union's.
    fn categorical(
        &self,
        field: &FieldRef,
        present: &[bool],
        categories: &[String],
    ) -> Result<ArrayRef, StoreError> {
        let code_of: HashMap<&str, i32> = categories
            .iter()
            .enumerate()
            .map(|(code, c)| (c.as_str(), code as i32))
            .collect();
        let mut keys: Vec<Option<i32>> = Vec::with_capacity(self.n_cells() as usize);
        for (member, &has) in self.members.iter().zip(present) {
            let n_cells = member.manifest().n_cells as usize;
            if !has {
                keys.extend(std::iter::repeat_n(None, n_cells));
                continue;
            }
            let (_, values) = member.column(Table::Cells, field.name())?;
            // `Dataset::column` reads a categorical as Dictionary<Int32,
            // Utf8>, coded by the member's own category list.
            let (Some(values), Some(member_categories)) = (
                values.as_dictionary_opt::<Int32Type>(),
                values
                    .as_dictionary_opt::<Int32Type>()
                    .and_then(|v| v.values().as_string_opt::<i32>()),
            ) else {
                return Err(StoreError::Arrow {
                    path: member.dir().to_owned(),
                    source: ArrowError::SchemaError(format!(
                        "categorical {} read as {}",
                        field.name(),
                        values.data_type()
                    )),
                });
            };
            let translated: Vec<Option<i32>> = member_categories
                .iter()
                .map(|c| c.and_then(|c| code_of.get(c).copied()))
                .collect();
            let translate = |k: i32| translated.get(k as usize).copied().flatten();
            keys.extend(values.keys().iter().map(|k| k.and_then(translate)));
        }
        dictionary(keys, categories).map_err(self.arrow_error())
    }

    fn arrow_error(&self) -> impl FnOnce(ArrowError) -> StoreError + '_ {
        StoreError::arrow(&self.path)
    }
}

fn dictionary(keys: Vec<Option<i32>>, categories: &[String]) -> Result<ArrayRef, ArrowError> {
    let values = StringArray::from_iter_values(categories);
    Ok(Arc::new(DictionaryArray::try_new(
        Int32Array::from(keys),
        Arc::new(values),
    )?))
}

fn unknown<'a>(table: Table, column: &str, names: impl Iterator<Item = &'a String>) -> StoreError {
    StoreError::UnknownColumn {
        table: table.name(),
        column: column.to_string(),
        columns: names.cloned().collect(),
    }
}
