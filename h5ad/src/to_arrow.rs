//! How a row range of a column becomes an Arrow array: numbers keep their
//! width and sign, AnnData masks (true = missing) become nulls, categorical
//! codes become Int32 dictionary keys over the shared category list.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{
    ArrayRef, BooleanArray, DictionaryArray, Int32Array, PrimitiveArray, StringArray,
};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;
use rust_hdf5::ReadNumeric;

use crate::array::{Array, Dtype};
use crate::column::Categorical;
use crate::error::H5adError;
use crate::strings::Strings;

/// The Arrow type of a numeric dataset. float16 (rare) widens to Float32, exactly.
pub(crate) fn numeric_type(dtype: &Dtype) -> DataType {
    match *dtype {
        Dtype::Int { size, signed } => integer_type(size, signed),
        Dtype::Float { size: 8 } => DataType::Float64,
        Dtype::Float { .. } => DataType::Float32,
        // Only numeric datasets become numeric columns, so this is Dtype::Bool.
        _ => DataType::Boolean,
    }
}

fn integer_type(size: u32, signed: bool) -> DataType {
    match (size, signed) {
        (1, true) => DataType::Int8,
        (2, true) => DataType::Int16,
        (4, true) => DataType::Int32,
        (_, true) => DataType::Int64,
        (1, false) => DataType::UInt8,
        (2, false) => DataType::UInt16,
        (4, false) => DataType::UInt32,
        (_, false) => DataType::UInt64,
    }
}

/// Rows of a numeric or boolean dataset, as the type `numeric_type` names.
pub(crate) fn numeric(
    values: &Array,
    rows: Range<u64>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, H5adError> {
    match numeric_type(values.dtype()) {
        DataType::Int8 => primitive::<Int8Type>(values, rows, nulls),
        DataType::Int16 => primitive::<Int16Type>(values, rows, nulls),
        DataType::Int32 => primitive::<Int32Type>(values, rows, nulls),
        DataType::Int64 => primitive::<Int64Type>(values, rows, nulls),
        DataType::UInt8 => primitive::<UInt8Type>(values, rows, nulls),
        DataType::UInt16 => primitive::<UInt16Type>(values, rows, nulls),
        DataType::UInt32 => primitive::<UInt32Type>(values, rows, nulls),
        DataType::UInt64 => primitive::<UInt64Type>(values, rows, nulls),
        DataType::Float32 => primitive::<Float32Type>(values, rows, nulls),
        DataType::Float64 => primitive::<Float64Type>(values, rows, nulls),
        _ => {
            let bools = values.bools(rows)?;
            // Same rows as the mask, which open() checked is as long as the values.
            let array = BooleanArray::new(bools.into(), nulls);
            Ok(Arc::new(array))
        }
    }
}

fn primitive<T>(
    values: &Array,
    rows: Range<u64>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, H5adError>
where
    T: ArrowPrimitiveType,
    T::Native: ReadNumeric,
{
    let native = values.numeric::<T::Native>(rows)?;
    let array =
        PrimitiveArray::<T>::try_new(native.into(), nulls).map_err(|e| values.loc().invalid(e))?;
    Ok(Arc::new(array))
}

/// Rows of a string dataset; nulls where given.
pub(crate) fn strings(
    values: &Strings,
    rows: Range<u64>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef, H5adError> {
    let strings = values.read(rows)?;
    let array: StringArray = match nulls {
        None => strings.into_iter().map(Some).collect(),
        Some(nulls) => strings
            .into_iter()
            .zip(nulls.iter())
            .map(|(value, valid)| valid.then_some(value))
            .collect(),
    };
    Ok(Arc::new(array))
}

/// Validity from an AnnData mask, where true means missing; None when nothing is.
pub(crate) fn nulls(mask: &Array, rows: Range<u64>) -> Result<Option<NullBuffer>, H5adError> {
    let missing = mask.bools(rows)?;
    if !missing.contains(&true) {
        return Ok(None);
    }
    let valid: Vec<bool> = missing.into_iter().map(|m| !m).collect();
    Ok(Some(valid.into()))
}

/// Codes become Int32 keys; code -1 is null, any other code must name a category.
pub(crate) fn categorical(c: &Categorical, rows: Range<u64>) -> Result<ArrayRef, H5adError> {
    let codes = c.codes.i64s(rows.clone())?;
    let n = c.categories.len() as i64;
    let keys: Int32Array = codes
        .iter()
        .enumerate()
        .map(|(i, &code)| match code {
            -1 => Ok(None),
            // Categorical::new caps the category count at i32::MAX.
            code if (0..n).contains(&code) => Ok(Some(code as i32)),
            code => Err(c.codes.loc().invalid(format!(
                "code {code} at row {} names no category (there are {n})",
                rows.start + i as u64
            ))),
        })
        .collect::<Result<_, _>>()?;
    let array = DictionaryArray::<Int32Type>::try_new(keys, c.dictionary.clone())
        .map_err(|e| c.codes.loc().invalid(e))?;
    Ok(Arc::new(array))
}
