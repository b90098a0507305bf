//! A pandas DataFrame as anndata writes it (`encoding-type` "dataframe"),
//! created at its final length and filled batch by batch, so a 100M-row obs
//! never sits in memory. The first Arrow column (Utf8) becomes the index;
//! dictionary columns become categoricals, Int64 and Float64 columns arrays.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::Categorical;
use rust_hdf5::{DatatypeMessage, H5Dataset, H5Group, Hdf5Error, Result};

use super::encoding::{bool_attr, mark_dataset, mark_group, CodeWidth};

const INDEX: &str = "_index";

pub(super) struct FrameWriter {
    columns: Vec<Column>,
    next_row: usize,
}

enum Column {
    Strings(H5Dataset),
    Codes(H5Dataset, CodeWidth),
    Int64(H5Dataset),
    Float64(H5Dataset),
}

impl FrameWriter {
    /// Creates group `name` in `parent` for `rows` rows of `schema`;
    /// `categoricals` gives the category list of each dictionary column.
    pub(super) fn create(
        parent: &H5Group,
        name: &str,
        schema: &Schema,
        rows: usize,
        categoricals: &[Categorical],
    ) -> Result<Self> {
        let (index, columns) = schema
            .fields()
            .split_first()
            .ok_or_else(|| Hdf5Error::InvalidState(format!("{name} has no index column")))?;
        if index.data_type() != &DataType::Utf8 {
            return Err(Hdf5Error::InvalidState(format!(
                "the index of {name}, {}, is not Utf8",
                index.name()
            )));
        }
        let group = parent.create_group(name)?;
        mark_group(&group, "dataframe", "0.2.0")?;
        group.set_attr_string(INDEX, INDEX)?;
        let order: Vec<&str> = columns.iter().map(|f| f.name().as_str()).collect();
        group.set_attr_string_array("column-order", &order)?;
        let mut writers = vec![Column::Strings(string_array(&group, INDEX, rows)?)];
        for field in columns {
            writers.push(Column::create(&group, field, rows, categoricals)?);
        }
        Ok(Self {
            columns: writers,
            next_row: 0,
        })
    }

    /// Writes the next rows; `batch` has the schema given to [`Self::create`].
    pub(super) fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        for (column, array) in self.columns.iter().zip(batch.columns()) {
            column.write(self.next_row, array.as_ref())?;
        }
        self.next_row += batch.num_rows();
        Ok(())
    }
}

impl Column {
    fn create(
        group: &H5Group,
        field: &Field,
        rows: usize,
        categoricals: &[Categorical],
    ) -> Result<Self> {
        let name = field.name().as_str();
        match field.data_type() {
            DataType::Utf8 => Ok(Self::Strings(string_array(group, name, rows)?)),
            DataType::Dictionary(_, _) => {
                let categories = categoricals
                    .iter()
                    .find(|c| c.column == name)
                    .ok_or_else(|| Hdf5Error::InvalidState(format!("no categories for {name}")))?;
                categorical(group, categories, rows)
            }
            DataType::Int64 => Ok(Self::Int64(numeric::<i64>(group, name, rows)?)),
            DataType::Float64 => Ok(Self::Float64(numeric::<f64>(group, name, rows)?)),
            other => Err(Hdf5Error::InvalidState(format!(
                "column {name} is {other}, which this writer does not encode"
            ))),
        }
    }

    fn write(&self, start: usize, array: &dyn Array) -> Result<()> {
        let rows = array.len();
        match self {
            Self::Strings(dataset) => {
                let strings: Vec<&str> = array.as_string::<i32>().iter().flatten().collect();
                dataset.write_vlen_strings_slice(start, &strings)
            }
            Self::Codes(dataset, width) => {
                let keys = array.as_dictionary::<Int32Type>().keys().values();
                write_codes(dataset, *width, start, keys)
            }
            Self::Int64(dataset) => {
                let values = array.as_primitive::<Int64Type>().values();
                dataset.write_slice(&[start], &[rows], values)
            }
            Self::Float64(dataset) => {
                let values = array.as_primitive::<Float64Type>().values();
                dataset.write_slice(&[start], &[rows], values)
            }
        }
    }
}

/// `group/<column>` with `ordered`, `codes` (filled later) and `categories`.
fn categorical(group: &H5Group, categorical: &Categorical, rows: usize) -> Result<Column> {
    let group = group.create_group(&categorical.column)?;
    mark_group(&group, "categorical", "0.2.0")?;
    bool_attr(&group, "ordered", categorical.ordered)?;
    let names: Vec<&str> = categorical.categories.iter().map(String::as_str).collect();
    let categories = group.write_vlen_strings("categories", &names)?;
    mark_dataset(&categories, "string-array", "0.2.0")?;
    let width = CodeWidth::for_categories(names.len());
    let codes = match width {
        CodeWidth::I8 => numeric::<i8>(&group, "codes", rows)?,
        CodeWidth::I16 => numeric::<i16>(&group, "codes", rows)?,
        CodeWidth::I32 => numeric::<i32>(&group, "codes", rows)?,
    };
    Ok(Column::Codes(codes, width))
}

fn write_codes(dataset: &H5Dataset, width: CodeWidth, start: usize, keys: &[i32]) -> Result<()> {
    // The keys index the category list, whose length picked the width.
    let counts = [keys.len()];
    match width {
        CodeWidth::I8 => {
            let codes: Vec<i8> = keys.iter().map(|&k| k as i8).collect();
            dataset.write_slice(&[start], &counts, &codes)
        }
        CodeWidth::I16 => {
            let codes: Vec<i16> = keys.iter().map(|&k| k as i16).collect();
            dataset.write_slice(&[start], &counts, &codes)
        }
        CodeWidth::I32 => dataset.write_slice(&[start], &counts, keys),
    }
}

/// A contiguous numeric array of `rows` elements, as h5py writes a numpy array.
fn numeric<T: rust_hdf5::H5Type>(group: &H5Group, name: &str, rows: usize) -> Result<H5Dataset> {
    let dataset = group.new_dataset::<T>().shape([rows]).create(name)?;
    mark_dataset(&dataset, "array", "0.2.0")?;
    Ok(dataset)
}

/// A contiguous array of `rows` variable-length UTF-8 strings, as h5py
/// writes numpy strings, filled by [`H5Dataset::write_vlen_strings_slice`].
fn string_array(group: &H5Group, name: &str, rows: usize) -> Result<H5Dataset> {
    let dataset = group
        .new_dataset::<u8>()
        .datatype(DatatypeMessage::vlen_string_utf8())
        .shape([rows])
        .create(name)?;
    mark_dataset(&dataset, "string-array", "0.2.0")?;
    Ok(dataset)
}
