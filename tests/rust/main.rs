//! End-to-end tests in Rust: a server in-process on an ephemeral port, the Rust client against it.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a test binary: its helper modules are pub to its tests, and a failed expectation is a failed test"
)]

mod client_stream;
mod common;
mod health;
mod idle_streams;
mod security;
