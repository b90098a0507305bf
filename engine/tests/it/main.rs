//! Integration tests of the engine on its own, as a program that embeds it
//! would use it: planning, partitions, and `tokens` streams.
//!
//! They are modules of one test binary, so the crate and its dependencies
//! are linked once rather than once a file.

mod partition;
mod tokens;
