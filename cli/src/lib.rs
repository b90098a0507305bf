//! The `cellflight` binary: its flags, and the commands they run (serve,
//! ingest, generate, inspect, hash-password). The service itself is
//! `cellflight-flight` over `cellflight-engine`; this crate only reads
//! flags into their configuration, starts and stops.

mod byte_size;
pub mod cli;
pub mod commands;
mod progress;

pub use commands::CommandError;
