//! How a cells column whose members' types differ gets one type
//! (docs/format.md): integers of one signedness take the wider; a signed
//! and an unsigned take the narrowest signed type holding both; integers
//! of at most 32 bits and floats take Float64. Nothing else widens.

use arrow_schema::DataType;

/// The one type holding every value of `a` and of `b` exactly, if any.
pub(crate) fn widen(a: &DataType, b: &DataType) -> Option<DataType> {
    if a == b {
        return Some(a.clone());
    }
    match (integer(a), integer(b)) {
        (Some(a), Some(b)) => integers(a, b),
        (Some(int), None) if b.is_floating() && int.bits <= 32 => Some(DataType::Float64),
        (None, Some(int)) if a.is_floating() && int.bits <= 32 => Some(DataType::Float64),
        (None, None) if a.is_floating() && b.is_floating() => Some(DataType::Float64),
        _ => None,
    }
}

#[derive(Clone, Copy)]
struct Integer {
    signed: bool,
    bits: u32,
}

fn integer(data_type: &DataType) -> Option<Integer> {
    use DataType::*;
    let (signed, bits) = match data_type {
        Int8 => (true, 8),
        Int16 => (true, 16),
        Int32 => (true, 32),
        Int64 => (true, 64),
        UInt8 => (false, 8),
        UInt16 => (false, 16),
        UInt32 => (false, 32),
        UInt64 => (false, 64),
        _ => return None,
    };
    Some(Integer { signed, bits })
}

fn integers(a: Integer, b: Integer) -> Option<DataType> {
    let bits = match (a.signed, b.signed) {
        (true, true) | (false, false) => a.bits.max(b.bits),
        // A signed type holds an unsigned one of half its width.
        (true, false) => a.bits.max(2 * b.bits),
        (false, true) => b.bits.max(2 * a.bits),
    };
    let signed = a.signed || b.signed;
    Some(match (signed, bits) {
        (true, 8) => DataType::Int8,
        (true, 16) => DataType::Int16,
        (true, 32) => DataType::Int32,
        (true, 64) => DataType::Int64,
        (false, 8) => DataType::UInt8,
        (false, 16) => DataType::UInt16,
        (false, 32) => DataType::UInt32,
        (false, 64) => DataType::UInt64,
        // UInt64 with a signed type: no integer type holds both.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DataType::*;

    #[test]
    fn integers_of_one_signedness_take_the_wider() {
        assert_eq!(widen(&Int16, &Int64), Some(Int64));
        assert_eq!(widen(&UInt32, &UInt8), Some(UInt32));
    }

    #[test]
    fn signed_with_unsigned_takes_a_signed_type_holding_both() {
        assert_eq!(widen(&Int8, &UInt8), Some(Int16));
        assert_eq!(widen(&UInt16, &Int64), Some(Int64));
        assert_eq!(widen(&Int32, &UInt32), Some(Int64));
        assert_eq!(widen(&Int8, &UInt64), None, "no integer holds both");
    }

    #[test]
    fn floats_take_float64_with_integers_of_32_bits_at_most() {
        assert_eq!(widen(&Float32, &Float64), Some(Float64));
        assert_eq!(widen(&Int32, &Float32), Some(Float64));
        assert_eq!(widen(&Float64, &UInt32), Some(Float64));
        assert_eq!(
            widen(&Int64, &Float64),
            None,
            "not every Int64 is exact in Float64"
        );
    }

    #[test]
    fn other_types_do_not_widen() {
        assert_eq!(widen(&Utf8, &Utf8), Some(Utf8));
        assert_eq!(widen(&Utf8, &Int32), None);
        assert_eq!(widen(&Boolean, &UInt8), None);
    }
}
