//! The cellflight engine, in plain Rust with no transport: the catalog of
//! datasets and collections, cohorts and gene spaces resolved with SQL, stream plans, and
//! each partition's minibatches assembled and encoded as Arrow IPC
//! messages on blocking threads. A front door (the Flight service, a
//! test, an embedding program) calls [`Engine::plan`] then
//! [`Engine::partition`], and maps [`EngineError::kind`] to its codes.

mod caller;
mod cohort;
mod collection_rows;
mod columns;
mod config;
mod datasets;
mod encode;
mod engine;
mod error;
mod genes;
mod ipc;
mod minibatch;
mod partition;
mod plan;
mod rows;
mod tokens;
mod transform;

pub use caller::Caller;
pub use config::EngineConfig;
pub use engine::Engine;
pub use error::{sql_error_kind, EngineError, ErrorKind};
pub use partition::{Minibatch, Minibatches, Partition, SEND_QUEUE_BYTES};
pub use plan::{Plan, MAX_MINIBATCH_BYTES, MAX_PLAN_TICKET_BYTES};
pub use rows::{FetchRows, MappedMatrix, RemoteRows, RowSource};
