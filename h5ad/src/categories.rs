//! Category lists as strings. Categories may be numbers or booleans; they are
//! spelled the way pandas' `str()` spells them, so a category reads the same
//! in cellflight as in Python ("3", "0.5", "1e+16", "True").

use rust_hdf5::H5File;

use crate::array::{Array, Dtype};
use crate::attrs::Meta;
use crate::error::{H5adError, Loc};
use crate::strings::Strings;

/// Every category of the dataset at `loc`, in order.
pub(crate) fn read(file: &H5File, meta: &Meta, loc: Loc) -> Result<Vec<String>, H5adError> {
    let array = Array::open_1d(file, loc.clone())?;
    let all = 0..array.len();
    match array.dtype() {
        Dtype::VlenStr | Dtype::FixedStr => Strings::open(file, meta, loc)?.read_all(),
        Dtype::Int { signed: true, .. } => Ok(to_strings(array.numeric::<i64>(all)?)),
        Dtype::Int { signed: false, .. } => Ok(to_strings(array.numeric::<u64>(all)?)),
        Dtype::Float { size: 8 } => Ok(array
            .numeric::<f64>(all)?
            .into_iter()
            .map(python_f64)
            .collect()),
        Dtype::Float { .. } => Ok(array
            .numeric::<f32>(all)?
            .into_iter()
            .map(python_f32)
            .collect()),
        Dtype::Bool => Ok(array.bools(all)?.into_iter().map(python_bool).collect()),
        Dtype::Other(name) => Err(loc.unsupported(format!("categories of type {name}"))),
    }
}

fn to_strings<T: ToString>(values: Vec<T>) -> Vec<String> {
    values.iter().map(T::to_string).collect()
}

fn python_bool(value: bool) -> String {
    if value { "True" } else { "False" }.to_string()
}

/// Python's `repr(float)`: the shortest digits that round-trip.
fn python_f64(value: f64) -> String {
    if !value.is_finite() {
        return non_finite(value.is_nan(), value.is_sign_negative());
    }
    python_float(&format!("{value:e}"))
}

/// numpy's `str(np.float32)`: shortest float32 digits, same notation rules.
fn python_f32(value: f32) -> String {
    if !value.is_finite() {
        return non_finite(value.is_nan(), value.is_sign_negative());
    }
    python_float(&format!("{value:e}"))
}

fn non_finite(nan: bool, negative: bool) -> String {
    match (nan, negative) {
        (true, _) => "nan",
        (false, true) => "-inf",
        (false, false) => "inf",
    }
    .to_string()
}

/// Rewrites Rust's shortest scientific form ("-2.25e1") in Python's notation:
/// positional when the exponent is in -4..16 ("-22.5", "1.0"), else
/// scientific with a signed two-digit exponent ("1e+16", "1.5e-05").
fn python_float(scientific: &str) -> String {
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let body = if (-4..16).contains(&exponent) {
        positional(&digits, exponent)
    } else {
        exponential(&digits, exponent)
    };
    format!("{sign}{body}")
}

fn positional(digits: &str, exponent: i32) -> String {
    let point = exponent + 1; // digits before the decimal point
    if point <= 0 {
        return format!("0.{}{digits}", "0".repeat(point.unsigned_abs() as usize));
    }
    let point = point as usize;
    if point >= digits.len() {
        return format!("{digits}{}.0", "0".repeat(point - digits.len()));
    }
    format!("{}.{}", &digits[..point], &digits[point..])
}

fn exponential(digits: &str, exponent: i32) -> String {
    let (first, rest) = digits.split_at(1.min(digits.len()));
    let mantissa = if rest.is_empty() {
        first.to_string()
    } else {
        format!("{first}.{rest}")
    };
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_read_as_python_prints_them() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (2.25, "2.25"),
            (-22.5, "-22.5"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (value, python) in cases {
            assert_eq!(python_f64(value), python, "{value:e}");
        }
    }

    #[test]
    fn float32_uses_its_own_shortest_digits() {
        assert_eq!(python_f32(0.1), "0.1");
        assert_eq!(python_f32(2.5), "2.5");
        assert_eq!(python_f32(1e-5), "1e-05");
        assert_eq!(python_f32(16777216.0), "16777216.0");
    }

    #[test]
    fn booleans_are_capitalised() {
        assert_eq!(python_bool(true), "True");
        assert_eq!(python_bool(false), "False");
    }
}
