//! Reads AnnData `.h5ad` files in bounded memory: the expression matrix (CSR,
//! CSC or dense; X, raw/X or a layer) by pointer, entry or row range, and the
//! obs/var tables as Arrow record batches by row range. Current encodings and
//! the legacy (anndata 0.6, dataframe 0.1.0) one are read.
//!
//! Column types in Arrow: categorical -> Dictionary(Int32, Utf8) over the full
//! category list (code -1 -> null; numeric and boolean categories spelled as
//! pandas' `str()` spells them); bool -> Boolean; every integer width ->
//! the same Arrow integer; float32/float64 -> the same; string-array -> Utf8;
//! nullable-integer, nullable-boolean, nullable-string-array -> the value type
//! with nulls from the mask. The index column comes first and is non-null;
//! every other column is nullable.
//!
//! Memory: every read is a hyperslab of the range asked (compressed chunks
//! are decoded only where they overlap it). Category lists are read whole,
//! once, at open. Variable-length strings are read by range too (see
//! `strings.rs`); fixed-length string columns, rare in AnnData, are read whole
//! on each call. Nothing checks the matrix shape against the obs/var lengths:
//! compare `shape()` with `obs().n_rows()` and `var().n_rows()`.

mod array;
mod attrs;
mod categories;
mod column;
mod dataframe;
mod error;
mod file;
mod legacy;
mod matrix;
mod skipped;
mod strings;
mod to_arrow;
mod tree;

pub use dataframe::DataFrame;
pub use error::H5adError;
pub use file::H5ad;
pub use matrix::{MatrixEncoding, MatrixSelection, MatrixSource};
