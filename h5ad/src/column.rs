//! One dataframe column: how each AnnData encoding is found in the file and
//! how a range of it becomes an Arrow array with its type kept.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray};
use arrow_schema::DataType;
use rust_hdf5::H5File;

use crate::array::{Array, Dtype};
use crate::attrs::Meta;
use crate::categories;
use crate::error::{H5adError, Loc};
use crate::legacy;
use crate::strings::Strings;
use crate::to_arrow;
use crate::tree::{node, Node};

pub(crate) struct Column {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    Categorical(Categorical),
    /// Integers, floats or booleans.
    Numeric(Array),
    Strings(Strings),
    /// nullable-integer / nullable-boolean: values plus a mask (true = missing).
    MaskedNumeric {
        values: Array,
        mask: Array,
    },
    /// nullable-string-array.
    MaskedStrings {
        values: Strings,
        mask: Array,
    },
}

pub(crate) struct Categorical {
    pub(crate) codes: Array,
    pub(crate) categories: Vec<String>,
    /// The categories as the Arrow dictionary every batch shares.
    pub(crate) dictionary: ArrayRef,
    pub(crate) ordered: bool,
}

impl Categorical {
    pub(crate) fn new(
        codes: Array,
        categories: Vec<String>,
        ordered: bool,
    ) -> Result<Self, H5adError> {
        if !matches!(codes.dtype(), Dtype::Int { .. }) {
            return Err(codes
                .loc()
                .unsupported(format!("categorical codes of type {}", codes.dtype())));
        }
        // Arrow dictionary keys are Int32.
        if i32::try_from(categories.len()).is_err() {
            return Err(codes.loc().unsupported(format!(
                "{} categories, more than Int32 keys address",
                categories.len()
            )));
        }
        let dictionary = Arc::new(StringArray::from(categories.clone()));
        Ok(Categorical {
            codes,
            categories,
            dictionary,
            ordered,
        })
    }
}

impl Column {
    /// The column `name` of the dataframe at `frame`, whatever its encoding.
    pub(crate) fn open(
        file: &H5File,
        meta: &Meta,
        frame: &Loc,
        name: &str,
    ) -> Result<Column, H5adError> {
        let loc = frame.child(name);
        let kind = match node(file, loc.object()) {
            Node::Group => open_group(file, meta, loc)?,
            Node::Dataset => open_dataset(file, meta, frame, loc)?,
            Node::Absent => return Err(loc.missing("column listed in column-order")),
        };
        Ok(Column {
            name: name.to_string(),
            kind,
        })
    }

    pub(crate) fn len(&self) -> u64 {
        match &self.kind {
            Kind::Categorical(c) => c.codes.len(),
            Kind::Numeric(values) | Kind::MaskedNumeric { values, .. } => values.len(),
            Kind::Strings(values) | Kind::MaskedStrings { values, .. } => values.len(),
        }
    }

    /// The object the column's rows come from, for errors.
    pub(crate) fn loc(&self) -> &Loc {
        match &self.kind {
            Kind::Categorical(c) => c.codes.loc(),
            Kind::Numeric(values) | Kind::MaskedNumeric { values, .. } => values.loc(),
            Kind::Strings(values) | Kind::MaskedStrings { values, .. } => values.loc(),
        }
    }

    /// The mask of a nullable column; open checks it is as long as the index.
    pub(crate) fn mask(&self) -> Option<&Array> {
        match &self.kind {
            Kind::MaskedNumeric { mask, .. } | Kind::MaskedStrings { mask, .. } => Some(mask),
            _ => None,
        }
    }

    pub(crate) fn data_type(&self) -> DataType {
        match &self.kind {
            Kind::Categorical(_) => {
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
            }
            Kind::Numeric(values) | Kind::MaskedNumeric { values, .. } => {
                to_arrow::numeric_type(values.dtype())
            }
            Kind::Strings(_) | Kind::MaskedStrings { .. } => DataType::Utf8,
        }
    }

    /// Rows [rows) as an Arrow array of `data_type()`.
    pub(crate) fn read(&self, rows: Range<u64>) -> Result<ArrayRef, H5adError> {
        match &self.kind {
            Kind::Categorical(c) => to_arrow::categorical(c, rows),
            Kind::Numeric(values) => to_arrow::numeric(values, rows, None),
            Kind::Strings(values) => to_arrow::strings(values, rows, None),
            Kind::MaskedNumeric { values, mask } => {
                let nulls = to_arrow::nulls(mask, rows.clone())?;
                to_arrow::numeric(values, rows, nulls)
            }
            Kind::MaskedStrings { values, mask } => {
                let nulls = to_arrow::nulls(mask, rows.clone())?;
                to_arrow::strings(values, rows, nulls)
            }
        }
    }
}

/// A column stored as a group: categorical or one of the nullable encodings.
fn open_group(file: &H5File, meta: &Meta, loc: Loc) -> Result<Kind, H5adError> {
    let attrs = meta.attrs(&loc)?;
    let encoding = attrs
        .string("encoding-type")?
        .ok_or_else(|| loc.unsupported("group column without an encoding-type attribute"))?;
    match encoding.as_str() {
        "categorical" => {
            let codes = Array::open_1d(file, loc.child("codes"))?;
            let categories = categories::read(file, meta, loc.child("categories"))?;
            let ordered = attrs.flag("ordered")?.unwrap_or(false);
            Ok(Kind::Categorical(Categorical::new(
                codes, categories, ordered,
            )?))
        }
        "nullable-integer" | "nullable-boolean" => {
            let values = Array::open_1d(file, loc.child("values"))?;
            if !values.dtype().is_numeric() {
                return Err(values
                    .loc()
                    .unsupported(format!("{encoding} values of type {}", values.dtype())));
            }
            let mask = Array::open_1d(file, loc.child("mask"))?;
            Ok(Kind::MaskedNumeric { values, mask })
        }
        "nullable-string-array" => {
            let values = Strings::open(file, meta, loc.child("values"))?;
            let mask = Array::open_1d(file, loc.child("mask"))?;
            Ok(Kind::MaskedStrings { values, mask })
        }
        other => Err(loc.unsupported(format!("column encoding-type '{other}'"))),
    }
}

/// A column stored as a dataset: an array, a string array, or (legacy) the
/// codes of a categorical whose categories live in `__categories`.
fn open_dataset(file: &H5File, meta: &Meta, frame: &Loc, loc: Loc) -> Result<Kind, H5adError> {
    let attrs = meta.attrs(&loc)?;
    if attrs.has("categories") {
        return legacy::categorical(file, meta, frame, loc, &attrs).map(Kind::Categorical);
    }
    let encoding = attrs.string("encoding-type")?;
    match encoding.as_deref() {
        Some("array" | "string-array") | None => {}
        Some(other) => return Err(loc.unsupported(format!("column encoding-type '{other}'"))),
    }
    let array = Array::open_1d(file, loc.clone())?;
    match array.dtype() {
        dtype if dtype.is_numeric() => Ok(Kind::Numeric(array)),
        dtype if dtype.is_string() => Ok(Kind::Strings(Strings::open(file, meta, loc)?)),
        dtype => Err(loc.unsupported(format!("column of type {dtype}"))),
    }
}
