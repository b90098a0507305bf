//! Attribute reads, through hdf5-reader rather than rust-hdf5: rust-hdf5 0.7.9
//! reads a group's attribute only as one string, and AnnData keeps arrays and
//! booleans on groups (X's `shape`, a dataframe's `column-order`, a
//! categorical's `ordered`). hdf5-reader also resolves the variable-length
//! strings of a string column (see `strings.rs`).

use std::path::Path;

use hdf5_reader::{Attribute, ByteOrder, Datatype, Hdf5File};

use crate::error::{H5adError, Loc};

/// The file as hdf5-reader sees it: metadata only, opened beside rust-hdf5's
/// handle. It reads headers and heaps on demand, never the whole file.
pub(crate) struct Meta {
    file: Hdf5File,
}

impl Meta {
    pub(crate) fn open(path: &Path) -> Result<Meta, hdf5_reader::error::Error> {
        Ok(Meta {
            file: Hdf5File::open(path)?,
        })
    }

    /// The attributes of the group or dataset at `loc` (the root for "").
    pub(crate) fn attrs(&self, loc: &Loc) -> Result<Attrs, H5adError> {
        let list = self.list(loc.object()).map_err(|e| loc.read(e))?;
        Ok(Attrs {
            loc: loc.clone(),
            list,
        })
    }

    fn list(&self, path: &str) -> hdf5_reader::error::Result<Vec<Attribute>> {
        if path.is_empty() || path == "/" {
            return self.file.root_group()?.attributes();
        }
        match self.file.group(path) {
            Ok(group) => group.attributes(),
            Err(_) => Ok(self.file.dataset(path)?.attributes()),
        }
    }

    /// The dataset at `loc`, for resolving its variable-length strings.
    pub(crate) fn dataset(&self, loc: &Loc) -> Result<hdf5_reader::Dataset, H5adError> {
        self.file.dataset(loc.object()).map_err(|e| loc.read(e))
    }

    /// The name of the child of group `loc` whose object header is at `address`
    /// (what an object reference points to).
    pub(crate) fn child_at(&self, loc: &Loc, address: u64) -> Result<Option<String>, H5adError> {
        let group = self.file.group(loc.object()).map_err(|e| loc.read(e))?;
        group
            .child_name_by_address(address)
            .map_err(|e| loc.read(e))
    }

    fn offset_size(&self) -> u8 {
        self.file.superblock().offset_size
    }

    /// Decodes object references (legacy categoricals point at their categories this way).
    pub(crate) fn references(&self, attr: &Attribute) -> hdf5_reader::error::Result<Vec<u64>> {
        hdf5_reader::reference::read_object_references(&attr.raw_data, self.offset_size())
    }
}

/// The attributes of one object, with typed getters that name the object and
/// the attribute when the value is not what AnnData writes.
pub(crate) struct Attrs {
    loc: Loc,
    list: Vec<Attribute>,
}

impl Attrs {
    pub(crate) fn get(&self, name: &str) -> Option<&Attribute> {
        self.list.iter().find(|a| a.name == name)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// A string attribute (scalar, or an array of one).
    pub(crate) fn string(&self, name: &str) -> Result<Option<String>, H5adError> {
        let Some(values) = self.strings(name)? else {
            return Ok(None);
        };
        match <[String; 1]>::try_from(values) {
            Ok([value]) => Ok(Some(value)),
            Err(values) => Err(self.bad(name, format!("{} strings, expected one", values.len()))),
        }
    }

    /// A string-array attribute. anndata writes an empty list as an empty
    /// float64 array, so an empty numeric array reads as no strings.
    pub(crate) fn strings(&self, name: &str) -> Result<Option<Vec<String>>, H5adError> {
        let Some(attr) = self.get(name) else {
            return Ok(None);
        };
        if is_empty_numeric(attr) {
            return Ok(Some(Vec::new()));
        }
        attr.read_strings()
            .map(Some)
            .map_err(|e| self.bad(name, format!("not a string: {e}")))
    }

    /// An integer attribute (scalar or array), e.g. `shape`.
    pub(crate) fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, H5adError> {
        let Some(attr) = self.get(name) else {
            return Ok(None);
        };
        let Datatype::FixedPoint {
            size,
            signed,
            byte_order,
        } = &attr.datatype
        else {
            return Err(self.bad(name, format!("not an integer: {:?}", attr.datatype)));
        };
        decode_ints(&attr.raw_data, usize::from(*size), *signed, *byte_order)
            .map(Some)
            .map_err(|problem| self.bad(name, problem))
    }

    /// A boolean attribute (numpy bool, an HDF5 enum over int8, or an integer).
    pub(crate) fn flag(&self, name: &str) -> Result<Option<bool>, H5adError> {
        let Some(attr) = self.get(name) else {
            return Ok(None);
        };
        let one_byte_int = matches!(attr.datatype, Datatype::FixedPoint { size: 1, .. });
        let bool_enum = matches!(&attr.datatype, Datatype::Enum { base, .. }
            if matches!(**base, Datatype::FixedPoint { size: 1, .. }));
        match attr.raw_data.as_slice() {
            [byte] if one_byte_int || bool_enum => Ok(Some(*byte != 0)),
            _ => Err(self.bad(name, format!("not a boolean: {:?}", attr.datatype))),
        }
    }

    fn bad(&self, name: &str, problem: impl std::fmt::Display) -> H5adError {
        self.loc.invalid(format!("attribute '{name}': {problem}"))
    }
}

fn is_empty_numeric(attr: &Attribute) -> bool {
    matches!(
        attr.datatype,
        Datatype::FloatingPoint { .. } | Datatype::FixedPoint { .. }
    ) && attr.raw_data.is_empty()
}

/// Integers of any standard width and byte order, as i64.
fn decode_ints(
    raw: &[u8],
    size: usize,
    signed: bool,
    order: ByteOrder,
) -> Result<Vec<i64>, String> {
    if !matches!(size, 1 | 2 | 4 | 8) || !raw.len().is_multiple_of(size) {
        return Err(format!("{} bytes of {size}-byte integers", raw.len()));
    }
    raw.chunks_exact(size)
        .map(|chunk| {
            let mut bytes = [0u8; 8];
            match order {
                ByteOrder::LittleEndian => bytes[..size].copy_from_slice(chunk),
                ByteOrder::BigEndian => bytes[..size]
                    .iter_mut()
                    .zip(chunk.iter().rev())
                    .for_each(|(b, c)| *b = *c),
            }
            widen(u64::from_le_bytes(bytes), size, signed)
        })
        .collect()
}

/// The little-endian `size`-byte value in `bits`, sign-extended when signed.
fn widen(bits: u64, size: usize, signed: bool) -> Result<i64, String> {
    let shift = 64 - 8 * size as u32;
    if signed {
        Ok(((bits << shift) as i64) >> shift)
    } else {
        i64::try_from(bits).map_err(|_| format!("{bits} does not fit in i64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_integers_of_every_width_and_order() {
        let le = decode_ints(&[0xff, 0x01, 0x00, 0x00], 2, true, ByteOrder::LittleEndian);
        assert_eq!(le, Ok(vec![0x01ff, 0]));
        let be = decode_ints(&[0x01, 0xff], 2, false, ByteOrder::BigEndian);
        assert_eq!(be, Ok(vec![0x01ff]));
        let negative = decode_ints(&[0xfe], 1, true, ByteOrder::LittleEndian);
        assert_eq!(negative, Ok(vec![-2]));
        let too_big = decode_ints(&[0xff; 8], 8, false, ByteOrder::LittleEndian);
        assert!(too_big.is_err());
        assert!(decode_ints(&[0; 3], 2, true, ByteOrder::LittleEndian).is_err());
    }
}
