//! Errors by kind, so a server maps them to protocol codes in one place.

use std::time::Duration;

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;

use crate::memory::QUERY_LIMIT;

/// What went wrong with a SQL request, by kind.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// Syntax or planning error: the user's query is wrong (DataFusion's message).
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// An unknown dataset or table.
    #[error("not found: {what}")]
    NotFound { what: String },
    /// A dataset the caller has no grant for.
    #[error("permission denied: no grant for dataset {dataset}")]
    PermissionDenied { dataset: String },
    /// A column that no table in the query has.
    #[error("unknown column: {column}")]
    UnknownColumn { column: String },
    /// A statement this read-only service does not run.
    #[error("refused: {what}: {why}")]
    Refused { what: String, why: String },
    /// A limit (memory, rows) was exceeded; `limit` names it.
    #[error("resource exhausted: {limit}")]
    ResourceExhausted { limit: String },
    /// The query ran longer than the configured limit.
    #[error("query timed out after {limit:?}")]
    Timeout { limit: Duration },
    /// A failure of the service, not of the query.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The kind of a [`SqlError`], for mapping to protocol status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlErrorKind {
    InvalidQuery,
    NotFound,
    PermissionDenied,
    UnknownColumn,
    Refused,
    ResourceExhausted,
    Timeout,
    Internal,
}

impl SqlError {
    pub fn kind(&self) -> SqlErrorKind {
        match self {
            SqlError::InvalidQuery(_) => SqlErrorKind::InvalidQuery,
            SqlError::NotFound { .. } => SqlErrorKind::NotFound,
            SqlError::PermissionDenied { .. } => SqlErrorKind::PermissionDenied,
            SqlError::UnknownColumn { .. } => SqlErrorKind::UnknownColumn,
            SqlError::Refused { .. } => SqlErrorKind::Refused,
            SqlError::ResourceExhausted { .. } => SqlErrorKind::ResourceExhausted,
            SqlError::Timeout { .. } => SqlErrorKind::Timeout,
            SqlError::Internal(_) => SqlErrorKind::Internal,
        }
    }

    pub(crate) fn refused(what: impl Into<String>, why: impl Into<String>) -> Self {
        SqlError::Refused {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Classifies a DataFusion error; `memory_bytes` names the pool's limit
    /// when the pool refused an allocation.
    pub(crate) fn from_datafusion(error: DataFusionError, memory_bytes: usize) -> Self {
        match innermost(error) {
            DataFusionError::SQL(e, _) => SqlError::InvalidQuery(e.to_string()),
            DataFusionError::SchemaError(e, _) => from_schema_error(*e),
            DataFusionError::Plan(msg) => from_plan_message(msg),
            DataFusionError::ResourcesExhausted(msg) if msg.starts_with(QUERY_LIMIT) => {
                SqlError::ResourceExhausted { limit: msg }
            }
            DataFusionError::ResourcesExhausted(msg) => SqlError::ResourceExhausted {
                limit: format!(
                    "memory limit of {memory_bytes} bytes shared by running queries ({msg})"
                ),
            },
            // Raised while evaluating the user's expressions (bad casts,
            // division by zero, bad function arguments); infrastructure
            // failures arrive as IoError, ObjectStore, ParquetError, Internal.
            DataFusionError::Execution(msg) | DataFusionError::NotImplemented(msg) => {
                SqlError::InvalidQuery(msg)
            }
            DataFusionError::ArrowError(e, _) => from_arrow(*e, memory_bytes),
            // Raised by our own providers (a dataset without a grant).
            DataFusionError::External(boxed) => match boxed.downcast::<SqlError>() {
                Ok(error) => *error,
                Err(other) => SqlError::Internal(other.to_string()),
            },
            other => SqlError::Internal(other.to_string()),
        }
    }
}

/// Strips the wrappers (context, diagnostics, shared, collections, errors
/// crossing a thread as `External`) to reach the error that says what happened.
fn innermost(error: DataFusionError) -> DataFusionError {
    match error {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            innermost(*inner)
        }
        DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
            Ok(inner) => innermost(inner),
            Err(shared) => clone_kind(&shared),
        },
        DataFusionError::Collection(mut errors) if !errors.is_empty() => {
            innermost(errors.swap_remove(0))
        }
        DataFusionError::External(boxed) => match boxed.downcast::<DataFusionError>() {
            Ok(inner) => innermost(*inner),
            Err(boxed) => DataFusionError::External(boxed),
        },
        other => other,
    }
}

/// A shared error (one failure seen by several partitions) cannot be moved
/// out; keep its kind and message.
fn clone_kind(error: &DataFusionError) -> DataFusionError {
    match error.find_root() {
        DataFusionError::ResourcesExhausted(msg) => {
            DataFusionError::ResourcesExhausted(msg.clone())
        }
        DataFusionError::Execution(msg) => DataFusionError::Execution(msg.clone()),
        DataFusionError::Plan(msg) => DataFusionError::Plan(msg.clone()),
        other => DataFusionError::Internal(other.to_string()),
    }
}

fn from_schema_error(error: SchemaError) -> SqlError {
    match error {
        SchemaError::FieldNotFound { field, .. } => SqlError::UnknownColumn {
            column: field.flat_name(),
        },
        other => SqlError::InvalidQuery(other.to_string()),
    }
}

/// DataFusion reports unknown tables as a plan error `table '<name>' not found`.
fn from_plan_message(msg: String) -> SqlError {
    let unknown_table = msg
        .strip_prefix("table '")
        .and_then(|rest| rest.split_once("' not found"))
        .map(|(name, _)| name.to_string());
    match unknown_table {
        Some(name) => SqlError::NotFound {
            what: format!("table {name}"),
        },
        None => SqlError::InvalidQuery(msg),
    }
}

fn from_arrow(error: ArrowError, memory_bytes: usize) -> SqlError {
    match error {
        ArrowError::ExternalError(boxed) => match boxed.downcast::<DataFusionError>() {
            Ok(inner) => SqlError::from_datafusion(*inner, memory_bytes),
            Err(boxed) => SqlError::Internal(boxed.to_string()),
        },
        ArrowError::IoError(..) | ArrowError::MemoryError(_) => {
            SqlError::Internal(error.to_string())
        }
        // Casts, arithmetic overflow, division by zero, parse errors: the
        // query asked for something its data cannot give.
        other => SqlError::InvalidQuery(other.to_string()),
    }
}
