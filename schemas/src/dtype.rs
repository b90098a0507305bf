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
    /// The narrowest type holding `value` exactly.
    pub fn narrowest_for(value: f64) -> Self {
        let is_count = value >= 0.0 && value.fract() == 0.0;
        if is_count && value <= f64::from(u8::MAX) {
            Self::UInt8
        } else if is_count && value <= f64::from(u16::MAX) {
            Self::UInt16
        } else if is_count && value <= f64::from(u32::MAX) {
            Self::UInt32
        } else if f64::from(value as f32) == value || value.is_nan() {
            Self::Float32
        } else {
            Self::Float64
        }
    }

    /// Whether `value` is stored in this type without change.
    pub fn holds(self, value: f64) -> bool {
        self.widen(Self::narrowest_for(value)) == self
    }

    /// The narrowest type holding every value that `self` or `other` holds.
    pub fn widen(self, other: Self) -> Self {
        use ValueType::*;
        match (self.max(other), self.min(other)) {
            // A large count is not exact in f32, so it forces f64.
            (Float32, UInt32) => Float64,
            (wider, _) => wider,
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

    #[test]
    fn widening_keeps_every_value_exact() {
        assert_eq!(UInt8.widen(UInt16), UInt16);
        assert_eq!(UInt16.widen(Float32), Float32);
        assert_eq!(UInt32.widen(Float32), Float64);
        assert_eq!(Float32.widen(UInt32), Float64);
        assert_eq!(Float64.widen(UInt8), Float64);
    }
}
