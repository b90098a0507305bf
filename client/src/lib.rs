//! A Rust client of the cellflight training stream (docs/protocol.md):
//! connect over TCP (with TLS and a bearer token if the server wants them)
//! or a Unix socket, plan an epoch, and read a partition's
//! minibatches with their positions, ready to resume from, failing over
//! to the partition's next replica when one fails or falls silent.

mod client;
mod error;
mod failover;

pub use client::{
    BearerToken, Client, ConnectOptions, EpochPlan, Minibatch, MinibatchStream,
    DEFAULT_FAILOVER_TIMEOUT, MAX_MESSAGE_BYTES,
};
pub use error::ClientError;
