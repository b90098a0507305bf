//! Every way a request to the engine can fail, with its source kept. The
//! engine names no protocol code: [`EngineError::kind`] says whose fault
//! a failure is, and the front door maps kinds to codes in one place.

use cellflight_sampler::SamplerError;
use cellflight_schemas::RequestError;
use cellflight_sql::{SqlError, SqlErrorKind};
use cellflight_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A request or ticket the client wrote wrong.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// A cohort, weight or gene query failed; its kind says how.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// Sampler settings out of range (every sampler error is the client's).
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    /// A dataset's files could not be read (or a column is unknown).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Encoding a minibatch failed: the server's fault.
    #[error("encoding failed: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{data}: no datasets found")]
    NoDatasets { data: String },
    #[error("this server holds {datasets} datasets and no default: name one with \"dataset\"")]
    NoDefaultDataset { datasets: usize },
    /// The ticket is sound but the dataset moved on since it was planned.
    #[error(
        "the ticket is for version {ticket_version} of dataset {dataset}, which now has version {current_version}; plan again with GetFlightInfo"
    )]
    StaleTicket {
        dataset: String,
        ticket_version: String,
        current_version: String,
    },
    #[error("dataset {dataset} is obs-only: it has no matrix to stream")]
    NoMatrix { dataset: String },
    /// A tokenizer names a vocabulary the server does not hold.
    #[error("{}", unknown_vocabulary(name, path.as_deref()))]
    UnknownVocabulary {
        name: String,
        /// The file looked for; none when the server has no vocabulary directory.
        path: Option<std::path::PathBuf>,
    },
    /// A vocabulary file that cannot serve the request: malformed, past its
    /// bounds, or lacking what the tokenizer needs; the reason names what.
    #[error("vocabulary {name} cannot serve this request: {reason}")]
    BadVocabulary { name: String, reason: String },
    /// The ticket is sound but its vocabulary's content changed since.
    #[error(
        "the ticket was planned with vocabulary {name} of hash {ticket_hash}, and the server's {name} now has hash {current_hash}; plan again with GetFlightInfo"
    )]
    VocabularyChanged {
        name: String,
        ticket_hash: String,
        current_hash: String,
    },
    /// A value the request asked for that this dataset cannot give, e.g.
    /// unknown gene names or a minibatch over the size limit; the message
    /// says which and what to change.
    #[error("{0}")]
    Unservable(String),
    /// The same error, about the request key `key` (`obs_columns: ...`).
    #[error("{key}: {source}")]
    InKey {
        key: &'static str,
        source: Box<EngineError>,
    },
    /// Reloading the catalog changes what everyone sees.
    #[error("refresh reloads every dataset: it needs a token granted them all")]
    RefreshNeedsEveryGrant,
    /// A background task (a column read, a stream's producer) died.
    #[error("{task} failed: {reason}")]
    TaskFailed { task: &'static str, reason: String },
}

/// Whose fault a failure is, and so how a protocol reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; the message says how.
    InvalidArgument,
    NotFound,
    PermissionDenied,
    /// The request was sound when planned, but the data moved on.
    FailedPrecondition,
    /// A configured limit was reached; the message names it.
    ResourceExhausted,
    DeadlineExceeded,
    /// A store the server reads from failed or could not be reached; the
    /// request may succeed later or on another replica.
    Unavailable,
    /// The server's fault, never the client's.
    Internal,
}

impl EngineError {
    /// `task` died in a panic that said `panic` (the payload
    /// `catch_unwind` or a task's join error hands back).
    pub fn panicked(task: &'static str, panic: &(dyn std::any::Any + Send)) -> Self {
        let reason = match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
            (Some(text), _) => format!("panicked: {text}"),
            (_, Some(text)) => format!("panicked: {text}"),
            _ => "panicked".into(),
        };
        Self::TaskFailed { task, reason }
    }

    /// The error about request key `key`.
    pub fn in_key(self, key: &'static str) -> Self {
        Self::InKey {
            key,
            source: Box::new(self),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Request(_) | Self::Sampler(_) | Self::NoDefaultDataset { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::Unservable(_) => ErrorKind::InvalidArgument,
            Self::Sql(error) => sql_kind(error.kind()),
            Self::Store(StoreError::UnknownColumn { .. }) => ErrorKind::InvalidArgument,
            Self::Store(error) if error.is_not_found() => ErrorKind::NotFound,
            Self::Store(error) if error.is_unavailable() => ErrorKind::Unavailable,
            Self::Store(_) | Self::Arrow(_) | Self::TaskFailed { .. } => ErrorKind::Internal,
            Self::StaleTicket { .. }
            | Self::NoMatrix { .. }
            | Self::NoDatasets { .. }
            | Self::BadVocabulary { .. }
            | Self::VocabularyChanged { .. } => ErrorKind::FailedPrecondition,
            Self::UnknownVocabulary { .. } => ErrorKind::NotFound,
            Self::InKey { source, .. } => source.kind(),
            Self::RefreshNeedsEveryGrant => ErrorKind::PermissionDenied,
        }
    }
}

fn unknown_vocabulary(name: &str, path: Option<&std::path::Path>) -> String {
    match path {
        Some(path) => format!("unknown vocabulary {name}: {} does not exist", path.display()),
        None => format!(
            "unknown vocabulary {name}: this server has no vocabulary directory (serve a directory of datasets, or give --vocabularies)"
        ),
    }
}

fn sql_kind(kind: SqlErrorKind) -> ErrorKind {
    match kind {
        SqlErrorKind::InvalidQuery | SqlErrorKind::UnknownColumn | SqlErrorKind::Refused => {
            ErrorKind::InvalidArgument
        }
        SqlErrorKind::NotFound => ErrorKind::NotFound,
        SqlErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        SqlErrorKind::ResourceExhausted => ErrorKind::ResourceExhausted,
        SqlErrorKind::Timeout => ErrorKind::DeadlineExceeded,
        SqlErrorKind::Internal => ErrorKind::Internal,
    }
}

/// The kind of a SQL error, as the engine reports it; for front doors
/// that run SQL directly (ad hoc queries, Flight SQL).
pub fn sql_error_kind(error: &SqlError) -> ErrorKind {
    sql_kind(error.kind())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_prefixes_the_message_and_keeps_the_kind() {
        let error = EngineError::Store(StoreError::UnknownColumn {
            table: "cells",
            column: "nope".into(),
            columns: vec!["plate".into()],
        })
        .in_key("obs_columns");
        assert_eq!(error.kind(), ErrorKind::InvalidArgument);
        assert!(error.to_string().starts_with("obs_columns: "), "{error}");
    }

    #[test]
    fn sql_limits_stay_limits_and_server_faults_stay_internal() {
        let exhausted = EngineError::from(SqlError::ResourceExhausted {
            limit: "--sql-memory".into(),
        });
        assert_eq!(exhausted.kind(), ErrorKind::ResourceExhausted);
        let failed = EngineError::TaskFailed {
            task: "reading column plate",
            reason: "panicked".into(),
        };
        assert_eq!(failed.kind(), ErrorKind::Internal);
    }
}
