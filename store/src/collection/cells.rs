//! A collection's `cells`: the columns of its members' `cells` united
//! (docs/format.md). `cell_id` first, then every column in order of first
//! appearance (the first member's in its order, then each later member's
//! new ones), then `source_dataset`. A column a member lacks is null in its
//! cells; types widen by [`widen`]; a categorical's categories are the
//! union of the members', in member order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, FieldRef};

use super::error::CollectionError;
use super::widen::widen;
use crate::{Dataset, CELL_ID};

/// The column a collection adds: the member each cell comes from.
pub const SOURCE_DATASET: &str = "source_dataset";

/// Where a column of a collection's `cells` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellSource {
    /// The member's offset plus its own `cell_id`.
    CellId,
    /// The member's name, a categorical of the member names in order.
    SourceDataset,
    /// The members' column of that name, cast to the united type; null in
    /// the cells of a member without it (`present[m]` false).
    Members { present: Vec<bool> },
}

/// One column of a collection's `cells`.
#[derive(Debug, Clone)]
pub struct CellColumn {
    pub field: FieldRef,
    pub source: CellSource,
    /// A categorical's categories, in code order.
    pub categories: Option<Vec<String>>,
}

/// The text type of every categorical, as `Dataset::column` reads it.
pub(crate) fn categorical_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

/// A column being united, member by member.
struct Uniting {
    name: String,
    data_type: DataType,
    /// The member whose type `data_type` is (for errors).
    typed_by: String,
    nullable: bool,
    present: Vec<bool>,
    categorical: Option<CategoryUnion>,
}

struct CategoryUnion {
    categories: Vec<String>,
    known: HashSet<String>,
    ordered: bool,
    ordered_by: String,
}

impl CategoryUnion {
    fn add(&mut self, categories: &[String]) {
        for category in categories {
            if self.known.insert(category.clone()) {
                self.categories.push(category.clone());
            }
        }
    }
}

/// The columns of the `cells` of a collection of `members`.
pub(crate) fn unite_cells(
    collection: &str,
    members: &[Arc<Dataset>],
) -> Result<Vec<CellColumn>, CollectionError> {
    let mut columns: Vec<Uniting> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (m, member) in members.iter().enumerate() {
        let member_name = member.manifest().name.to_string();
        for field in member.cells_table().schema().fields() {
            let name = field.name();
            if name == SOURCE_DATASET {
                return Err(CollectionError::SourceDatasetTaken {
                    collection: collection.to_string(),
                    member: member_name,
                });
            }
            if name == CELL_ID {
                continue;
            }
            let categorical = member.manifest().cell_categorical(name);
            let data_type = match categorical {
                Some(_) => categorical_type(),
                None => field.data_type().clone(),
            };
            let Some(&i) = index.get(name.as_str()) else {
                index.insert(name.clone(), columns.len());
                let mut present = vec![false; members.len()];
                present[m] = true;
                columns.push(Uniting {
                    name: name.clone(),
                    data_type,
                    typed_by: member_name.clone(),
                    nullable: field.is_nullable(),
                    present,
                    categorical: categorical.map(|c| {
                        let mut union = CategoryUnion {
                            categories: Vec::new(),
                            known: HashSet::new(),
                            ordered: c.ordered,
                            ordered_by: member_name.clone(),
                        };
                        union.add(&c.categories);
                        union
                    }),
                });
                continue;
            };
            let column = &mut columns[i];
            let conflict = |column: &Uniting| CollectionError::TypeConflict {
                collection: collection.to_string(),
                column: column.name.clone(),
                first: format!("{} in {}", column.data_type, column.typed_by),
                second: format!("{} in {member_name}", field.data_type()),
            };
            match (&mut column.categorical, categorical) {
                (Some(union), Some(categorical)) => {
                    if union.ordered != categorical.ordered {
                        let (ordered_in, unordered_in) = match union.ordered {
                            true => (union.ordered_by.clone(), member_name.clone()),
                            false => (member_name.clone(), union.ordered_by.clone()),
                        };
                        return Err(CollectionError::OrderedConflict {
                            collection: collection.to_string(),
                            column: name.clone(),
                            ordered_in,
                            unordered_in,
                        });
                    }
                    union.add(&categorical.categories);
                }
                (None, None) => {
                    let Some(wide) = widen(&column.data_type, &data_type) else {
                        return Err(conflict(column));
                    };
                    if wide != column.data_type {
                        column.data_type = wide;
                        column.typed_by = member_name.clone();
                    }
                }
                _ => return Err(conflict(column)),
            }
            column.nullable |= field.is_nullable();
            column.present[m] = true;
        }
    }
    let mut united = vec![CellColumn {
        field: Arc::new(Field::new(CELL_ID, DataType::UInt64, false)),
        source: CellSource::CellId,
        categories: None,
    }];
    united.extend(columns.into_iter().map(finish));
    united.push(CellColumn {
        field: Arc::new(Field::new(SOURCE_DATASET, categorical_type(), false)),
        source: CellSource::SourceDataset,
        categories: Some(
            members
                .iter()
                .map(|m| m.manifest().name.to_string())
                .collect(),
        ),
    });
    Ok(united)
}

fn finish(column: Uniting) -> CellColumn {
    let everywhere = column.present.iter().all(|&p| p);
    let ordered = column.categorical.as_ref().is_some_and(|c| c.ordered);
    let field = Field::new(
        column.name,
        column.data_type,
        column.nullable || !everywhere,
    )
    .with_dict_is_ordered(ordered);
    CellColumn {
        field: Arc::new(field),
        source: CellSource::Members {
            present: column.present,
        },
        categories: column.categorical.map(|c| c.categories),
    }
}
