//! One HDF5 dataset read in row ranges (hyperslabs), never whole unless asked.
//! Conversions are exact or refused: an integer too large for an f64 is an
//! error naming the object, not a rounded value.

use std::ops::Range;

use rust_hdf5::format::messages::datatype::EnumMember;
use rust_hdf5::{DatatypeMessage, H5Dataset, H5File, ReadNumeric};

use crate::error::{H5adError, Loc};
use crate::tree::{node, Node};

/// Largest integer every f64 holds exactly (2^53).
const F64_EXACT: u64 = 1 << 53;

/// The element type of a dataset, as far as AnnData cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dtype {
    Int {
        size: u32,
        signed: bool,
    },
    Float {
        size: u32,
    },
    /// numpy's bool: an HDF5 enum FALSE/TRUE over a one-byte integer.
    Bool,
    VlenStr,
    FixedStr,
    Other(String),
}

/// The HDF5 class of a type the reader does not take, to name it in errors.
/// Not rust-hdf5's Display, which overflows on the sizes a corrupt file
/// declares.
fn class_name(message: &DatatypeMessage) -> &'static str {
    match message {
        DatatypeMessage::FixedPoint { .. } => "integer",
        DatatypeMessage::FloatingPoint { .. } => "float",
        DatatypeMessage::BitField { .. } => "bitfield",
        DatatypeMessage::Opaque { .. } => "opaque",
        DatatypeMessage::FixedString { .. } | DatatypeMessage::VarLenString { .. } => "string",
        DatatypeMessage::Compound { .. } => "compound",
        DatatypeMessage::Enum { .. } => "enum",
        DatatypeMessage::VarLenSequence { .. } => "variable-length sequence",
        DatatypeMessage::Array { .. } => "array",
        DatatypeMessage::Reference { .. } => "reference",
    }
}

impl Dtype {
    fn of(message: &DatatypeMessage) -> Dtype {
        match message {
            DatatypeMessage::FixedPoint { size, signed, .. } => Dtype::Int {
                size: *size,
                signed: *signed,
            },
            DatatypeMessage::FloatingPoint { size, .. } => Dtype::Float { size: *size },
            DatatypeMessage::Enum { base, members }
                if base.element_size() == 1 && is_bool(members) =>
            {
                Dtype::Bool
            }
            DatatypeMessage::VarLenString { .. } => Dtype::VlenStr,
            DatatypeMessage::FixedString { .. } => Dtype::FixedStr,
            other => Dtype::Other(class_name(other).to_string()),
        }
    }

    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self, Dtype::Int { .. } | Dtype::Float { .. } | Dtype::Bool)
    }

    pub(crate) fn is_string(&self) -> bool {
        matches!(self, Dtype::VlenStr | Dtype::FixedStr)
    }
}

/// h5py's bool enum: exactly FALSE = 0 and TRUE = 1.
fn is_bool(members: &[EnumMember]) -> bool {
    let named =
        |name: &str, value: u8| members.iter().any(|m| m.name == name && m.value == [value]);
    members.len() == 2 && named("FALSE", 0) && named("TRUE", 1)
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dtype::Int { size, signed: true } => write!(f, "int{}", size * 8),
            Dtype::Int {
                size,
                signed: false,
            } => write!(f, "uint{}", size * 8),
            Dtype::Float { size } => write!(f, "float{}", size * 8),
            Dtype::Bool => write!(f, "bool"),
            Dtype::VlenStr => write!(f, "variable-length string"),
            Dtype::FixedStr => write!(f, "fixed-length string"),
            Dtype::Other(name) => write!(f, "{name}"),
        }
    }
}

/// A hyperslab: first index and count along every dimension.
struct Hyperslab {
    starts: Vec<usize>,
    counts: Vec<usize>,
}

/// A dataset and where it is, for errors.
pub(crate) struct Array {
    ds: H5Dataset,
    loc: Loc,
    dtype: Dtype,
    shape: Vec<u64>,
}

impl Array {
    pub(crate) fn open(file: &H5File, loc: Loc) -> Result<Array, H5adError> {
        let ds = file
            .dataset(loc.object())
            .map_err(|e| match node(file, loc.object()) {
                Node::Absent => loc.missing("dataset"),
                Node::Group => loc.unsupported("a group where a dataset is expected"),
                Node::Dataset => loc.read(e),
            })?;
        let dtype = Dtype::of(&ds.datatype().map_err(|e| loc.read(e))?);
        let shape = ds.shape().iter().map(|&d| d as u64).collect();
        Ok(Array {
            ds,
            loc,
            dtype,
            shape,
        })
    }

    /// Opens a dataset that must be one-dimensional.
    pub(crate) fn open_1d(file: &H5File, loc: Loc) -> Result<Array, H5adError> {
        let array = Array::open(file, loc)?;
        if array.shape.len() != 1 {
            return Err(array.loc.unsupported(format!(
                "{}-dimensional dataset where a 1-D array is expected",
                array.shape.len()
            )));
        }
        Ok(array)
    }

    pub(crate) fn loc(&self) -> &Loc {
        &self.loc
    }

    pub(crate) fn dtype(&self) -> &Dtype {
        &self.dtype
    }

    pub(crate) fn shape(&self) -> &[u64] {
        &self.shape
    }

    pub(crate) fn dataset(&self) -> &H5Dataset {
        &self.ds
    }

    /// Length of the first dimension (0 for a scalar, which no reader accepts).
    pub(crate) fn len(&self) -> u64 {
        self.shape.first().copied().unwrap_or(0)
    }

    /// Rows [range) of the first dimension, every column of the others,
    /// converted by rust-hdf5's checked numeric conversion.
    pub(crate) fn numeric<T: ReadNumeric>(&self, range: Range<u64>) -> Result<Vec<T>, H5adError> {
        let Some(slab) = self.selection(&range)? else {
            return Ok(Vec::new());
        };
        self.ds
            .read_numeric_slice_as::<T>(&slab.starts, &slab.counts)
            .map_err(|e| self.loc.read(e))
    }

    /// Integer rows [range) as i64.
    pub(crate) fn i64s(&self, range: Range<u64>) -> Result<Vec<i64>, H5adError> {
        match self.dtype {
            Dtype::Int { .. } => self.numeric::<i64>(range),
            _ => Err(self.wrong_type("integers")),
        }
    }

    /// Numeric rows [range) as f64: floats widen exactly, integers must be
    /// within ±2^53, booleans are 0 and 1.
    pub(crate) fn f64s(&self, range: Range<u64>) -> Result<Vec<f64>, H5adError> {
        match self.dtype {
            Dtype::Float { .. } => self.numeric::<f64>(range),
            Dtype::Int { signed: true, .. } => self
                .numeric::<i64>(range)?
                .into_iter()
                .map(|v| self.exact(v))
                .collect(),
            Dtype::Int { signed: false, .. } => self
                .numeric::<u64>(range)?
                .into_iter()
                .map(|v| self.exact_unsigned(v))
                .collect(),
            Dtype::Bool => Ok(self.bools(range)?.into_iter().map(f64::from).collect()),
            _ => Err(self.wrong_type("numbers")),
        }
    }

    /// Boolean rows [range).
    pub(crate) fn bools(&self, range: Range<u64>) -> Result<Vec<bool>, H5adError> {
        if !matches!(self.dtype, Dtype::Bool | Dtype::Int { size: 1, .. }) {
            return Err(self.wrong_type("booleans"));
        }
        let Some(slab) = self.selection(&range)? else {
            return Ok(Vec::new());
        };
        let bytes = self
            .ds
            .read_slice::<u8>(&slab.starts, &slab.counts)
            .map_err(|e| self.loc.read(e))?;
        Ok(bytes.into_iter().map(|b| b != 0).collect())
    }

    fn exact(&self, value: i64) -> Result<f64, H5adError> {
        if value.unsigned_abs() > F64_EXACT {
            return Err(self.too_large(value));
        }
        Ok(value as f64)
    }

    fn exact_unsigned(&self, value: u64) -> Result<f64, H5adError> {
        if value > F64_EXACT {
            return Err(self.too_large(value));
        }
        Ok(value as f64)
    }

    fn too_large(&self, value: impl std::fmt::Display) -> H5adError {
        self.loc.unsupported(format!(
            "integer {value} is beyond 2^53, where f64 stops being exact"
        ))
    }

    fn wrong_type(&self, wanted: &str) -> H5adError {
        self.loc
            .unsupported(format!("holds {} where {wanted} are expected", self.dtype))
    }

    /// The hyperslab for rows [range), or None when the range is empty.
    fn selection(&self, range: &Range<u64>) -> Result<Option<Hyperslab>, H5adError> {
        self.loc.check_range(range, self.len())?;
        if range.is_empty() {
            return Ok(None);
        }
        let mut starts = vec![self.index(range.start)?];
        let mut counts = vec![self.index(range.end - range.start)?];
        for &dim in self.shape.iter().skip(1) {
            starts.push(0);
            counts.push(self.index(dim)?);
        }
        Ok(Some(Hyperslab { starts, counts }))
    }

    fn index(&self, value: u64) -> Result<usize, H5adError> {
        usize::try_from(value)
            .map_err(|_| self.loc.request(format!("{value} does not fit in memory")))
    }
}
