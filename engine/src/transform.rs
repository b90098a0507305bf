//! What a row's stored values become in a minibatch: as stored, widened to
//! f32 for dense rows, or transformed (`normalize_total`, then `log1p`,
//! computed in f64 and rounded once to f32; docs/protocol.md).
//!
//! Counts are small integers, and a row holds the same few values many
//! times over, so a transformed row remembers what each small value became:
//! a row of 1,500 entries costs a few dozen `ln_1p` calls instead of 1,500.
//! A remembered value is the one the formula gives, bit for bit, so the
//! output is the same whichever way it was made, on any CPU.

use arrow_array::types::Float32Type;
use arrow_array::ArrowPrimitiveType;
use arrow_buffer::ArrowNativeType;
use cellflight_schemas::Transform;

/// Small integers a transformed row remembers: what counts mostly are.
const REMEMBERED: usize = 256;

/// A stored expression value.
pub(crate) trait StoredValue: ArrowNativeType {
    fn to_f64(self) -> f64;

    /// The value as an index below [`REMEMBERED`], if it is an integer that
    /// small (never for floating-point types, whose rows hold few repeats).
    fn small(self) -> Option<usize>;

    /// The sum of `values` in f64, as a left-to-right f64 sum gives it.
    fn total(values: &[Self]) -> f64 {
        values.iter().map(|&v| v.to_f64()).sum()
    }
}

macro_rules! small_integer {
    ($($t:ty),*) => {$(
        impl StoredValue for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }

            #[inline]
            fn small(self) -> Option<usize> {
                (usize::from(self) < REMEMBERED).then_some(usize::from(self))
            }

            /// Summed as integers, which vectorises: a row of at most 2^32
            /// entries below 2^16 totals under 2^48, where every partial f64
            /// sum is exact, so the result equals the f64 sum bit for bit.
            fn total(values: &[Self]) -> f64 {
                values.iter().map(|&v| u64::from(v)).sum::<u64>() as f64
            }
        }
    )*};
}
small_integer!(u8, u16);

impl StoredValue for u32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }

    #[inline]
    fn small(self) -> Option<usize> {
        usize::try_from(self).ok().filter(|&v| v < REMEMBERED)
    }
    // A total of u32 values can pass 2^53, where only the f64 sum's own
    // rounding gives the documented result.
}

macro_rules! floating_point {
    ($($t:ty),*) => {$(
        impl StoredValue for $t {
            #[inline]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }

            #[inline]
            fn small(self) -> Option<usize> {
                None
            }
        }
    )*};
}
floating_point!(f32, f64);

/// Turns one row's stored values (of Arrow type `V`) into output values
/// (of Arrow type `Out`): call [`start_row`] with the row's values before
/// asking for any of them.
///
/// [`start_row`]: RowValues::start_row
pub(crate) trait RowValues<V: ArrowPrimitiveType> {
    type Out: ArrowPrimitiveType;
    fn start_row(&mut self, row: &[V::Native]);
    fn value(&mut self, value: V::Native) -> <Self::Out as ArrowPrimitiveType>::Native;
}

/// Values as stored (`csr` without a transform).
pub(crate) struct AsStored;

impl<V: ArrowPrimitiveType> RowValues<V> for AsStored {
    type Out = V;

    #[inline]
    fn start_row(&mut self, _row: &[V::Native]) {}

    #[inline]
    fn value(&mut self, value: V::Native) -> V::Native {
        value
    }
}

/// Values as f32 (`dense` without a transform).
pub(crate) struct AsFloat32;

impl<V: ArrowPrimitiveType<Native: StoredValue>> RowValues<V> for AsFloat32 {
    type Out = Float32Type;

    #[inline]
    fn start_row(&mut self, _row: &[V::Native]) {}

    #[inline]
    fn value(&mut self, value: V::Native) -> f32 {
        value.to_f64() as f32
    }
}

/// Values transformed, each row by its own normalisation factor.
pub(crate) struct Transformed {
    normalize_total: Option<f64>,
    log1p: bool,
    /// The current row's factor.
    factor: f64,
    /// What each small integer became in the current row; NaN until met
    /// (a transformed count is never NaN).
    remembered: [f32; REMEMBERED],
}

impl Transformed {
    pub(crate) fn new(transform: Transform) -> Self {
        Self {
            normalize_total: transform.normalize_total,
            log1p: transform.log1p,
            factor: 1.0,
            remembered: [f32::NAN; REMEMBERED],
        }
    }

    /// The formula itself, for one value of a row with `factor`.
    #[inline]
    fn formula<V: StoredValue>(&self, value: V) -> f32 {
        let scaled = value.to_f64() * self.factor;
        (if self.log1p { scaled.ln_1p() } else { scaled }) as f32
    }
}

impl<V: ArrowPrimitiveType<Native: StoredValue>> RowValues<V> for Transformed {
    type Out = Float32Type;

    /// The factor is target / the row's total over all stored genes (a row
    /// with total 0 has no entries).
    fn start_row(&mut self, row: &[V::Native]) {
        self.factor = match self.normalize_total {
            None => 1.0,
            Some(target) => {
                let total = V::Native::total(row);
                if total > 0.0 {
                    target / total
                } else {
                    0.0
                }
            }
        };
        self.remembered.fill(f32::NAN);
    }

    #[inline]
    fn value(&mut self, value: V::Native) -> f32 {
        let Some(small) = value.small() else {
            return self.formula(value);
        };
        let remembered = self.remembered[small];
        if !remembered.is_nan() {
            return remembered;
        }
        let computed = self.formula(value);
        self.remembered[small] = computed;
        computed
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::types::{UInt16Type, UInt8Type};

    use super::*;

    fn start<V: ArrowPrimitiveType<Native: StoredValue>>(t: &mut Transformed, row: &[V::Native]) {
        RowValues::<V>::start_row(t, row);
    }

    fn value<V: ArrowPrimitiveType<Native: StoredValue>>(t: &mut Transformed, v: V::Native) -> f32 {
        RowValues::<V>::value(t, v)
    }

    fn log_normalised(target: f64) -> Transformed {
        Transformed::new(Transform {
            normalize_total: Some(target),
            log1p: true,
        })
    }

    #[test]
    fn a_row_is_normalised_over_all_its_values_then_log1p_is_taken() {
        let mut transform = log_normalised(100.0);
        start::<UInt16Type>(&mut transform, &[1, 3]);
        assert_eq!(transform.factor, 25.0);
        assert_eq!(
            value::<UInt16Type>(&mut transform, 3),
            (75f64).ln_1p() as f32
        );
        start::<UInt16Type>(&mut transform, &[]);
        assert_eq!(transform.factor, 0.0);
    }

    #[test]
    fn remembered_values_equal_the_formula_bit_for_bit() {
        // Every u16 twice (the second time remembered if small), in rows
        // whose totals give factors of every magnitude.
        let values: Vec<u16> = (0..=u16::MAX).collect();
        for total in [1u16, 7, 1_000, 65_535] {
            let mut transform = log_normalised(10_000.0);
            start::<UInt16Type>(&mut transform, &[total]);
            for pass in 0..2 {
                for &stored in &values {
                    let expected = transform.formula(stored);
                    let got = value::<UInt16Type>(&mut transform, stored);
                    assert_eq!(got.to_bits(), expected.to_bits(), "{stored}, pass {pass}");
                }
            }
        }
    }

    #[test]
    fn a_new_row_forgets_the_last_rows_values() {
        let mut transform = log_normalised(100.0);
        start::<UInt8Type>(&mut transform, &[1, 1]);
        let in_first = value::<UInt8Type>(&mut transform, 1);
        start::<UInt8Type>(&mut transform, &[1, 9]);
        assert_ne!(value::<UInt8Type>(&mut transform, 1), in_first);
        assert_eq!(
            value::<UInt8Type>(&mut transform, 1),
            (10f64).ln_1p() as f32
        );
    }

    #[test]
    fn integer_totals_equal_the_f64_sum_bit_for_bit() {
        let row: Vec<u16> = (0..100_000u32)
            .map(|i| (i * 7919 % 65_536) as u16)
            .collect();
        let f64_sum: f64 = row.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(u16::total(&row).to_bits(), f64_sum.to_bits());
        let bytes: Vec<u8> = row.iter().map(|&v| v as u8).collect();
        let f64_sum: f64 = bytes.iter().map(|&v| f64::from(v)).sum();
        assert_eq!(u8::total(&bytes).to_bits(), f64_sum.to_bits());
    }
}
