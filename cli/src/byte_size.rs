//! Byte sizes on the command line: `512MiB`, `4GiB`, `1.5GB`, `1000000`.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 9] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let expected =
            || format!("{text:?} is not a size; expected e.g. 512MiB, 4GiB or a number of bytes");
        let text = text.trim();
        let (number, unit) = UNITS
            .iter()
            .find_map(|&(suffix, unit)| text.strip_suffix(suffix).map(|n| (n.trim(), unit)))
            .unwrap_or((text, 1));
        let number: f64 = number.parse().map_err(|_| expected())?;
        if !number.is_finite() || number <= 0.0 {
            return Err(expected());
        }
        Ok(Self((number * unit as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} MiB", self.0 as f64 / f64::from(1u32 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_binary_and_decimal_units() {
        assert_eq!("4GiB".parse(), Ok(ByteSize(4 << 30)));
        assert_eq!("512MiB".parse(), Ok(ByteSize(512 << 20)));
        assert_eq!("1.5GB".parse(), Ok(ByteSize(1_500_000_000)));
        assert_eq!("1000".parse(), Ok(ByteSize(1000)));
        assert_eq!("64 MiB".parse(), Ok(ByteSize(64 << 20)));
    }

    #[test]
    fn refuses_anything_else_saying_what_is_expected() {
        for bad in ["", "lots", "-1GiB", "0", "4XB"] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("expected e.g. 512MiB"), "{bad}: {err}");
        }
    }
}
