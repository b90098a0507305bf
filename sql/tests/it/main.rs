//! Integration tests of the SQL layer: queries, cohorts, grants and refusals.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

mod access;
mod cohort;
mod common;
mod refusals;
mod sql;
