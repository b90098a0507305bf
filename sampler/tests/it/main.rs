//! Integration tests of the sampler: its blocks, determinism, exactly-once
//! epochs, resume, uniformity and weights.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

mod blocks;
mod common;
mod determinism;
mod exactly_once;
mod golden;
mod large;
mod resume;
mod uniformity;
mod weighted;
