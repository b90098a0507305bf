//! String datasets read by range. rust-hdf5 0.7.9 reads variable-length
//! strings only whole, so a range is read in two steps: rust-hdf5 reads the
//! range's 16-byte heap references as a hyperslab, and hdf5-reader resolves
//! each one in the global heap (through its own bounded heap cache).

use std::ops::Range;

use rust_hdf5::{DatatypeMessage, H5File, H5Type};

use crate::array::{Array, Dtype};
use crate::attrs::Meta;
use crate::error::{H5adError, Loc};

/// One variable-length element as stored: sequence length (u32), heap
/// collection address (8 bytes), object index (u32).
#[derive(Clone, Copy)]
#[repr(C)]
struct HeapRef([u8; 16]);

impl H5Type for HeapRef {
    fn hdf5_type() -> DatatypeMessage {
        DatatypeMessage::vlen_string_utf8()
    }

    fn element_size() -> usize {
        16
    }
}

/// A 1-D string dataset (variable or fixed length).
pub(crate) struct Strings {
    array: Array,
    heap: hdf5_reader::Dataset,
}

impl Strings {
    pub(crate) fn open(file: &H5File, meta: &Meta, loc: Loc) -> Result<Strings, H5adError> {
        let array = Array::open_1d(file, loc)?;
        if !array.dtype().is_string() {
            return Err(array.loc().unsupported(format!(
                "holds {} where strings are expected",
                array.dtype()
            )));
        }
        let heap = meta.dataset(array.loc())?;
        Ok(Strings { array, heap })
    }

    pub(crate) fn len(&self) -> u64 {
        self.array.len()
    }

    pub(crate) fn loc(&self) -> &Loc {
        self.array.loc()
    }

    /// Elements [range).
    pub(crate) fn read(&self, range: Range<u64>) -> Result<Vec<String>, H5adError> {
        self.loc().check_range(&range, self.len())?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let sliceable = self.array.dtype() == &Dtype::VlenStr
            && self.array.dataset().element_size() == HeapRef::element_size();
        if sliceable {
            self.read_heap_refs(range)
        } else {
            self.read_whole_then_slice(range)
        }
    }

    /// Every element; for category lists, read once at open.
    pub(crate) fn read_all(&self) -> Result<Vec<String>, H5adError> {
        self.read(0..self.len())
    }

    fn read_heap_refs(&self, range: Range<u64>) -> Result<Vec<String>, H5adError> {
        let loc = self.loc();
        let start = usize::try_from(range.start).map_err(|e| loc.request(e))?;
        let count = usize::try_from(range.end - range.start).map_err(|e| loc.request(e))?;
        let refs = self
            .array
            .dataset()
            .read_slice::<HeapRef>(&[start], &[count])
            .map_err(|e| loc.read(e))?;
        refs.iter()
            .enumerate()
            .map(|(i, r)| {
                let bytes = self
                    .heap
                    .resolve_vlen_reference_bytes(&r.0, 1)
                    .map_err(|e| loc.read(format!("string {}: {e}", range.start + i as u64)))?;
                utf8(loc, bytes, range.start + i as u64)
            })
            .collect()
    }

    /// Fixed-length strings (and vlen strings in files with 4-byte addresses)
    /// have no range read in rust-hdf5: read the column whole. AnnData writes
    /// variable-length strings, so this is the rare path.
    fn read_whole_then_slice(&self, range: Range<u64>) -> Result<Vec<String>, H5adError> {
        let loc = self.loc();
        let all = self
            .array
            .dataset()
            .read_strings()
            .map_err(|e| loc.read(e))?;
        let start = usize::try_from(range.start).map_err(|e| loc.request(e))?;
        let end = usize::try_from(range.end).map_err(|e| loc.request(e))?;
        all.get(start..end).map(<[String]>::to_vec).ok_or_else(|| {
            loc.invalid(format!("holds {} strings, fewer than its shape", all.len()))
        })
    }
}

fn utf8(loc: &Loc, bytes: Vec<u8>, index: u64) -> Result<String, H5adError> {
    String::from_utf8(bytes).map_err(|_| loc.invalid(format!("string {index} is not UTF-8")))
}
