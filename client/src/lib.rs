//! A Rust client of the cellflight training stream (docs/protocol.md):
//! connect over TCP or a Unix socket, plan an epoch, and read a partition's
//! minibatches with their positions, ready to resume from.

mod client;
mod error;

pub use client::{Client, EpochPlan, Minibatch, MinibatchStream, MAX_MESSAGE_BYTES};
pub use error::ClientError;
