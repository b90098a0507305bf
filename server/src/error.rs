//! Every failure a client can see, by kind, mapped once to a gRPC status.

use cellflight_sampler::SamplerError;
use cellflight_schemas::RequestError;
use cellflight_sql::{SqlError, SqlErrorKind};
use cellflight_store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client's request or ticket is wrong; the message says how.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// No credentials, or credentials the server does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known credentials without a grant for what was asked.
    #[error("{0}")]
    PermissionDenied(String),
    /// The ticket is sound but the dataset moved on since it was made.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    /// A configured limit (memory, rows, size) was reached; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The server's fault (e.g. an unreadable dataset file), never the client's.
    #[error("{0}")]
    Internal(String),
}

/// Longest message sent: an error that quotes a hostile input (a 1 MB
/// string in a query) is cut, not echoed back whole.
const MAX_MESSAGE_BYTES: usize = 2048;

/// `message`, cut at a character boundary to at most [`MAX_MESSAGE_BYTES`].
fn bounded(mut message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let total = message.len();
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("... ({} more bytes cut)", total - end));
    message
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = bounded(error.to_string());
        match error {
            ServiceError::InvalidArgument(_) => Status::invalid_argument(message),
            ServiceError::NotFound(_) => Status::not_found(message),
            ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
            ServiceError::PermissionDenied(_) => Status::permission_denied(message),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
            ServiceError::Unimplemented(_) => Status::unimplemented(message),
            ServiceError::ResourceExhausted(_) => Status::resource_exhausted(message),
            ServiceError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ServiceError::Internal(_) => Status::internal(message),
        }
    }
}

impl From<SamplerError> for ServiceError {
    /// Every sampler error is about a value the client chose.
    fn from(error: SamplerError) -> Self {
        Self::InvalidArgument(error.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownColumn { .. } => Self::InvalidArgument(error.to_string()),
            error => {
                tracing::error!(%error, "dataset read failed");
                Self::Internal(error.to_string())
            }
        }
    }
}

impl From<RequestError> for ServiceError {
    /// A request or ticket the client wrote wrong.
    fn from(error: RequestError) -> Self {
        Self::InvalidArgument(error.to_string())
    }
}

impl ServiceError {
    /// The same error, its message prefixed by the request key it concerns
    /// (`obs_columns: cells has no column ...`); the kind is unchanged.
    pub fn in_key(self, key: &str) -> Self {
        let prefix = |message: String| format!("{key}: {message}");
        match self {
            Self::InvalidArgument(m) => Self::InvalidArgument(prefix(m)),
            Self::NotFound(m) => Self::NotFound(prefix(m)),
            Self::Unauthenticated(m) => Self::Unauthenticated(prefix(m)),
            Self::PermissionDenied(m) => Self::PermissionDenied(prefix(m)),
            Self::FailedPrecondition(m) => Self::FailedPrecondition(prefix(m)),
            Self::Unimplemented(m) => Self::Unimplemented(prefix(m)),
            Self::ResourceExhausted(m) => Self::ResourceExhausted(prefix(m)),
            Self::DeadlineExceeded(m) => Self::DeadlineExceeded(prefix(m)),
            Self::Internal(m) => Self::Internal(prefix(m)),
        }
    }
}

impl From<arrow_schema::ArrowError> for ServiceError {
    fn from(error: arrow_schema::ArrowError) -> Self {
        tracing::error!(%error, "arrow failed");
        Self::Internal(error.to_string())
    }
}

impl From<arrow_flight::error::FlightError> for ServiceError {
    /// Building a metadata answer failed: the server's fault.
    fn from(error: arrow_flight::error::FlightError) -> Self {
        tracing::error!(%error, "flight failed");
        Self::Internal(error.to_string())
    }
}

impl From<SqlError> for ServiceError {
    fn from(error: SqlError) -> Self {
        let message = error.to_string();
        match error.kind() {
            SqlErrorKind::InvalidQuery | SqlErrorKind::UnknownColumn | SqlErrorKind::Refused => {
                Self::InvalidArgument(message)
            }
            SqlErrorKind::NotFound => Self::NotFound(message),
            SqlErrorKind::PermissionDenied => Self::PermissionDenied(message),
            SqlErrorKind::ResourceExhausted => Self::ResourceExhausted(message),
            SqlErrorKind::Timeout => Self::DeadlineExceeded(message),
            SqlErrorKind::Internal => {
                tracing::error!(%error, "query failed");
                Self::Internal(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_quoting_a_huge_input_is_cut_at_a_character_boundary() {
        let huge = format!("unknown column {}", "\u{1F9EC}".repeat(1 << 18));
        let status = Status::from(ServiceError::InvalidArgument(huge));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with("unknown column "));
        assert!(status.message().len() < MAX_MESSAGE_BYTES + 64);
        assert!(status.message().ends_with("more bytes cut)"));
        let short = Status::from(ServiceError::NotFound("no dataset x".into()));
        assert_eq!(short.message(), "no dataset x");
    }
}
