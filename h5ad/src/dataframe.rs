//! obs and var: an index column and the columns of `column-order`, read by
//! row range into Arrow record batches. Category lists are read once, at
//! open; everything else is read per range.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rust_hdf5::H5File;

use crate::attrs::Meta;
use crate::column::{Column, Kind};
use crate::error::{H5adError, Loc};
use crate::strings::Strings;
use crate::tree::{node, Node};

/// An open obs or var table.
pub struct DataFrame {
    loc: Loc,
    n_rows: u64,
    index: Strings,
    columns: Vec<Column>,
    schema: SchemaRef,
}

impl fmt::Debug for DataFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataFrame")
            .field("loc", &self.loc)
            .field("n_rows", &self.n_rows)
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl DataFrame {
    /// Opens the dataframe group at `loc`; its index becomes the column `index_name`.
    pub(crate) fn open(
        file: &H5File,
        meta: &Meta,
        loc: Loc,
        index_name: &str,
    ) -> Result<DataFrame, H5adError> {
        check_is_dataframe(file, meta, &loc)?;
        let attrs = meta.attrs(&loc)?;
        let index_key = attrs
            .string("_index")?
            .ok_or_else(|| loc.missing("attribute '_index'"))?;
        let order = attrs
            .strings("column-order")?
            .ok_or_else(|| loc.missing("attribute 'column-order'"))?;
        let index = Strings::open(file, meta, loc.child(&index_key))?;
        let n_rows = index.len();
        let columns = order
            .iter()
            .map(|name| open_column(file, meta, &loc, name, n_rows, index_name))
            .collect::<Result<Vec<_>, _>>()?;
        let schema = schema(index_name, &columns);
        Ok(DataFrame {
            loc,
            n_rows,
            index,
            columns,
            schema,
        })
    }

    pub fn n_rows(&self) -> u64 {
        self.n_rows
    }

    /// The index column (Utf8, non-null) first, then every column of
    /// `column-order` with its type kept; see the crate docs for the mapping.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The categorical columns: name, full category list (used or not), `ordered`.
    pub fn categoricals(&self) -> Vec<cellflight_schemas::Categorical> {
        self.columns
            .iter()
            .filter_map(|column| match &column.kind {
                Kind::Categorical(c) => Some(cellflight_schemas::Categorical {
                    column: column.name.clone(),
                    categories: c.categories.clone(),
                    ordered: c.ordered,
                }),
                _ => None,
            })
            .collect()
    }

    /// Rows [rows) of every column as one batch with `schema()`. Each column
    /// is read as a hyperslab of exactly these rows.
    pub fn read(&self, rows: Range<u64>) -> Result<RecordBatch, H5adError> {
        self.loc.contained(|| self.read_rows(rows))
    }

    fn read_rows(&self, rows: Range<u64>) -> Result<RecordBatch, H5adError> {
        self.loc.check_range(&rows, self.n_rows)?;
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len() + 1);
        arrays.push(Arc::new(StringArray::from(self.index.read(rows.clone())?)));
        for column in &self.columns {
            arrays.push(column.read(rows.clone())?);
        }
        // The row count is explicit so a frame with no rows or no columns still batches.
        let options =
            RecordBatchOptions::new().with_row_count(Some((rows.end - rows.start) as usize));
        RecordBatch::try_new_with_options(self.schema.clone(), arrays, &options)
            .map_err(|e| self.loc.invalid(e))
    }
}

/// A dataframe is a group; anndata < 0.7 stored obs/var as one compound
/// dataset, which this reader does not take apart.
fn check_is_dataframe(file: &H5File, meta: &Meta, loc: &Loc) -> Result<(), H5adError> {
    match node(file, loc.object()) {
        Node::Group => {}
        Node::Dataset => {
            return Err(loc.unsupported(
                "a dataframe stored as one dataset (anndata < 0.7); re-save the file with anndata >= 0.7",
            ))
        }
        Node::Absent => return Err(loc.missing("group")),
    }
    match meta.attrs(loc)?.string("encoding-type")?.as_deref() {
        Some("dataframe") | None => Ok(()),
        Some(other) => {
            Err(loc.unsupported(format!("encoding-type '{other}', expected 'dataframe'")))
        }
    }
}

fn open_column(
    file: &H5File,
    meta: &Meta,
    frame: &Loc,
    name: &str,
    n_rows: u64,
    index_name: &str,
) -> Result<Column, H5adError> {
    if name == index_name {
        return Err(frame.child(name).unsupported(format!(
            "a column named '{index_name}', the name the index takes in the output"
        )));
    }
    let column = Column::open(file, meta, frame, name)?;
    check_length(column.loc(), column.len(), n_rows)?;
    if let Some(mask) = column.mask() {
        check_length(mask.loc(), mask.len(), n_rows)?;
    }
    Ok(column)
}

fn check_length(loc: &Loc, len: u64, n_rows: u64) -> Result<(), H5adError> {
    if len != n_rows {
        return Err(loc.invalid(format!("has {len} rows but the index has {n_rows}")));
    }
    Ok(())
}

fn schema(index_name: &str, columns: &[Column]) -> SchemaRef {
    let mut fields = vec![Field::new(index_name, DataType::Utf8, false)];
    fields.extend(
        columns
            .iter()
            .map(|column| Field::new(&column.name, column.data_type(), true)),
    );
    Arc::new(Schema::new(fields))
}
