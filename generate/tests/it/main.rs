//! Integration tests of the demo-data generator: its datasets, its `.h5ad`
//! files, and its speed (ignored unless asked for).
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

mod generate;
mod h5ad;
mod speed;
