use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

/// Storage type of gene indices: the narrowest unsigned type that holds
/// `n_genes - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexType {
    UInt16,
    UInt32,
}

impl IndexType {
    pub fn for_gene_count(n_genes: u64) -> Self {
        if n_genes <= u64::from(u16::MAX) + 1 {
            Self::UInt16
        } else {
            Self::UInt32
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 => DataType::UInt32,
        }
    }

    pub fn byte_width(self) -> usize {
        match self {
            Self::UInt16 => 2,
            Self::UInt32 => 4,
        }
    }
}

/// Storage type of expression values: the narrowest type that holds every
/// value of the dataset exactly, chosen once per dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    UInt8,
    UInt16,
    UInt32,
    Float32,
    Float64,
}

impl ValueType {
    /// The narrowest type holding every value of both types exactly: the
    /// wider, except that `uint32` with `float32` gives `float64` (the
    /// rule of a dataset's own values).
    pub fn widest_with(self, other: Self) -> Self {
        match (self.min(other), self.max(other)) {
            (Self::UInt32, Self::Float32) => Self::Float64,
            (_, wider) => wider,
        }
    }

    /// The narrowest type holding `value` exactly.
    pub fn narrowest_for(value: f64) -> Self {
        let mut scan = ValueTypeScan::default();
        scan.add(value);
        scan.finish()
    }

    /// Whether `value` is stored in this type without change.
    pub fn holds(self, value: f64) -> bool {
        match self {
            Self::Float64 => true,
            Self::Float32 => exact_in_f32(value),
            count => is_count(value) && value <= count.max_count(),
        }
    }

    fn max_count(self) -> f64 {
        match self {
            Self::UInt8 => f64::from(u8::MAX),
            Self::UInt16 => f64::from(u16::MAX),
            _ => f64::from(u32::MAX),
        }
    }

    pub fn arrow(self) -> DataType {
        match self {
            Self::UInt8 => DataType::UInt8,
            Self::UInt16 => DataType::UInt16,
            Self::UInt32 => DataType::UInt32,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
        }
    }

    pub fn byte_width(self) -> usize {
        match self {
            Self::UInt8 => 1,
            Self::UInt16 => 2,
            Self::UInt32 | Self::Float32 => 4,
            Self::Float64 => 8,
        }
    }
}

/// Finds the narrowest type holding every one of many values exactly: the
/// smallest unsigned type when all are counts, else float32 when every value
/// survives a round trip through it, else float64.
#[derive(Debug, Clone, Copy)]
pub struct ValueTypeScan {
    largest_count: f64,
    all_counts: bool,
    all_exact_in_f32: bool,
}

impl Default for ValueTypeScan {
    fn default() -> Self {
        Self {
            largest_count: 0.0,
            all_counts: true,
            all_exact_in_f32: true,
        }
    }
}

impl ValueTypeScan {
    pub fn add(&mut self, value: f64) {
        if is_count(value) {
            self.largest_count = self.largest_count.max(value);
        } else {
            self.all_counts = false;
        }
        self.all_exact_in_f32 &= exact_in_f32(value);
    }

    /// The scan of both scans' values together.
    pub fn merge(self, other: Self) -> Self {
        Self {
            largest_count: self.largest_count.max(other.largest_count),
            all_counts: self.all_counts && other.all_counts,
            all_exact_in_f32: self.all_exact_in_f32 && other.all_exact_in_f32,
        }
    }

    /// Nothing narrower than f64 can come of more values.
    pub fn is_widest(&self) -> bool {
        !self.all_exact_in_f32
    }

    pub fn finish(&self) -> ValueType {
        let counts = [ValueType::UInt8, ValueType::UInt16, ValueType::UInt32];
        let fitting_count = counts
            .into_iter()
            .find(|t| self.largest_count <= t.max_count());
        match fitting_count {
            Some(count) if self.all_counts => count,
            _ if self.all_exact_in_f32 => ValueType::Float32,
            _ => ValueType::Float64,
        }
    }
}

/// A non-negative integer. The round trip through u64 is a cast, where
/// `fract()` is a library call on baseline x86-64: this runs once a value.
fn is_count(value: f64) -> bool {
    value >= 0.0 && value < 2f64.powi(64) && (value as u64) as f64 == value
}

fn exact_in_f32(value: f64) -> bool {
    f64::from(value as f32) == value || value.is_nan()
}

#[cfg(test)]
mod tests {
    use super::ValueType::*;
    use super::*;

    #[test]
    fn gene_indices_fit_u16_up_to_65536_genes() {
        assert_eq!(IndexType::for_gene_count(62_710), IndexType::UInt16);
        assert_eq!(IndexType::for_gene_count(65_536), IndexType::UInt16);
        assert_eq!(IndexType::for_gene_count(65_537), IndexType::UInt32);
    }

    #[test]
    fn two_value_types_widen_to_one_holding_both_exactly() {
        assert_eq!(UInt8.widest_with(UInt16), UInt16);
        assert_eq!(UInt16.widest_with(Float32), Float32);
        assert_eq!(Float32.widest_with(UInt32), Float64);
        assert_eq!(Float64.widest_with(UInt8), Float64);
        assert_eq!(UInt32.widest_with(UInt32), UInt32);
    }

    #[test]
    fn each_value_gets_the_narrowest_exact_type() {
        assert_eq!(ValueType::narrowest_for(0.0), UInt8);
        assert_eq!(ValueType::narrowest_for(255.0), UInt8);
        assert_eq!(ValueType::narrowest_for(256.0), UInt16);
        assert_eq!(ValueType::narrowest_for(70_000.0), UInt32);
        assert_eq!(ValueType::narrowest_for(0.5), Float32);
        assert_eq!(ValueType::narrowest_for(-1.0), Float32);
        assert_eq!(ValueType::narrowest_for(f64::NAN), Float32);
        assert_eq!(ValueType::narrowest_for(0.1), Float64);
        assert_eq!(ValueType::narrowest_for(1e10), Float32);
        assert_eq!(ValueType::narrowest_for(1e10 + 1.0), Float64);
    }

    #[test]
    fn a_type_holds_exactly_the_values_it_stores_unchanged() {
        assert!(UInt8.holds(255.0) && !UInt8.holds(256.0) && !UInt8.holds(0.5));
        assert!(UInt16.holds(3.0) && !UInt16.holds(-3.0));
        assert!(Float32.holds(-0.5) && Float32.holds(f64::NAN) && !Float32.holds(0.1));
        assert!(Float64.holds(0.1) && Float64.holds(4e9));
    }

    fn scanned(values: &[f64]) -> ValueType {
        let mut scan = ValueTypeScan::default();
        values.iter().for_each(|&v| scan.add(v));
        scan.finish()
    }

    #[test]
    fn many_values_get_the_narrowest_type_holding_them_all() {
        assert_eq!(scanned(&[]), UInt8);
        assert_eq!(scanned(&[1.0, 255.0, 3.0]), UInt8);
        assert_eq!(scanned(&[1.0, 300.0]), UInt16);
        assert_eq!(scanned(&[70_001.0, 0.5]), Float32);
        assert_eq!(scanned(&[16_777_217.0, 0.5]), Float64);
        assert_eq!(scanned(&[16_777_217.0, 1.0]), UInt32);
        assert_eq!(scanned(&[1e10, 3.0]), Float32);
        assert_eq!(scanned(&[-1.0, 2.0]), Float32);
        assert_eq!(scanned(&[0.1, 2.0]), Float64);
    }

    fn merged(left: &[f64], right: &[f64]) -> ValueType {
        let scan = |values: &[f64]| {
            let mut scan = ValueTypeScan::default();
            values.iter().for_each(|&v| scan.add(v));
            scan
        };
        scan(left).merge(scan(right)).finish()
    }

    #[test]
    fn scans_of_two_halves_merge_into_the_scan_of_the_whole() {
        let cases: [(&[f64], &[f64]); 5] = [
            (&[1.0, 255.0], &[300.0]),
            (&[], &[70_000.0]),
            (&[16_777_217.0], &[1.0]),
            (&[16_777_217.0], &[0.5]),
            (&[-1.0], &[2.0]),
        ];
        for (left, right) in cases {
            let whole: Vec<f64> = left.iter().chain(right).copied().collect();
            assert_eq!(merged(left, right), scanned(&whole), "{left:?} + {right:?}");
        }
    }
}
