//! Integration tests of the `.h5ad` reader: fixtures, real files, corrupt and
//! mutated files.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

mod common;
mod corrupt;
mod fixtures_dataframe;
mod fixtures_matrix;
mod mutations_never_panic;
mod real_current;
mod real_dense_raw;
mod real_legacy;
mod rust_hdf5_written;
