//! Integration tests of the store: datasets and collections on disk, and
//! datasets in object storage read by ranges through the block cache.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

mod collection;
mod dataset;
mod remote;
#[path = "../support/mod.rs"]
mod support;
