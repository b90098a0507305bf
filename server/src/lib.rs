//! The cellflight data service as a library: the commands of the
//! `cellflight` binary, and its Flight service for tools and tests that
//! run a server in-process (`server_state` + `router`).

mod adhoc;
mod auth;
mod catalog;
pub mod cli;
pub mod commands;
mod error;
mod flight;
mod flight_sql;
mod metrics;
mod progress;
mod query;
mod request_size;
mod size;
mod state;
mod stream;
mod stream_slots;

pub use commands::{router, server_state, tls_config, CommandError};
pub use flight::CellflightService;
pub use state::ServerState;
