//! Integration tests of the SQL layer: queries, cohorts, grants and refusals.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

mod access;
mod cohort;
mod collection;
mod common;
mod refusals;
mod sql;
#[path = "../../../store/tests/support/mod.rs"]
mod store_support;
