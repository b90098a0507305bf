//! The cellflight front door: the Arrow Flight service (the training
//! stream and `{"sql": ...}` of docs/protocol.md) and Flight SQL on one
//! port, over the engine, with authentication, dataset grants, stream
//! slots, request size limits, metrics and logs. Build a [`Server`] from
//! a [`ServiceConfig`] and serve its router on any listener.
//!
//! Requests are decoded once into a typed command; every failure becomes
//! a gRPC status in one place ([`ServiceError`]), and every DoGet stream
//! passes through one wrapper that holds its slot, counts and logs it, and
//! never lets a short stream end with OK.

mod auth;
mod command;
mod config;
mod do_get;
mod error;
mod flight_sql;
mod lingering_close;
mod memory_budget;
mod metrics;
mod replicas;
mod request_size_limit;
mod server;
mod service;
mod shared;
mod sql_answers;
mod stream_slots;

pub use auth::{hash_password, PasswordError, SignInError, UsersError};
pub use config::{AuthConfig, ConnectionLimits, ServiceConfig, TlsFiles};
pub use error::ServiceError;
pub use lingering_close::{lingering_close, LingeringClose};
pub use replicas::{HostPort, ReplicaConfig, ReplicaUri, Scheme, UriError, MAX_REPLICAS};
pub use server::{Layers, Server, ServerError};
pub use stream_slots::StreamLimits;

/// The layers of [`Layers`], named so a program can spell the router's type.
pub mod layers {
    pub use crate::auth::{Authenticate, Authenticated};
    pub use crate::metrics::{CountFailures, Counted};
    pub use crate::request_size_limit::{RequestSizeLimit, SizeLimited};
}
