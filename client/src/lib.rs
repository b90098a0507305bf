//! A Rust client of the cellflight training stream (docs/protocol.md):
//! connect over TCP (with TLS and a bearer token if the server wants them)
//! or a Unix socket, plan an epoch, and read a partition's
//! minibatches with their positions, ready to resume from.

mod client;
mod error;

pub use client::{
    BearerToken, Client, ConnectOptions, EpochPlan, Minibatch, MinibatchStream, MAX_MESSAGE_BYTES,
};
pub use error::ClientError;
