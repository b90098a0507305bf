//! Every failure a client can see, turned into a gRPC status in one place,
//! which also picks how loudly the server logs it.

use cellflight_engine::{sql_error_kind, EngineError, ErrorKind};
use cellflight_schemas::RequestError;
use cellflight_sql::SqlError;
use tonic::{Code, Status};

use crate::auth::SignInError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// An ad hoc or Flight SQL query failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// A descriptor or ticket that is not what the protocol says.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The client's call is wrong; the message says how.
    #[error("{0}")]
    InvalidArgument(String),
    /// No credentials, or credentials the server does not know.
    #[error("{0}")]
    Unauthenticated(String),
    /// A Handshake that did not sign in.
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// The call does not apply to this server as configured.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    /// A configured limit (streams, request size) was reached; the message
    /// names its flag.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The server ended a call it had accepted (a stream left unread);
    /// the message says how to go on.
    #[error("{0}")]
    Aborted(String),
    /// The server's fault, never the client's.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The gRPC code of this failure.
    pub fn code(&self) -> Code {
        match self {
            Self::Engine(error) => code_of(error.kind()),
            Self::Sql(error) => code_of(sql_error_kind(error)),
            Self::Request(_) | Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) | Self::SignIn(SignInError::WrongPassword) => {
                Code::Unauthenticated
            }
            Self::SignIn(SignInError::TooManyFailures { .. } | SignInError::Busy) => {
                Code::ResourceExhausted
            }
            Self::SignIn(SignInError::CheckFailed(_)) => Code::Internal,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Aborted(_) => Code::Aborted,
            Self::Internal(_) => Code::Internal,
        }
    }
}

fn code_of(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

impl From<arrow_schema::ArrowError> for ServiceError {
    /// Building an answer (a schema, a metadata table) failed.
    fn from(error: arrow_schema::ArrowError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<arrow_flight::error::FlightError> for ServiceError {
    /// Building a metadata answer failed: the server's fault.
    fn from(error: arrow_flight::error::FlightError) -> Self {
        Self::Internal(error.to_string())
    }
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
    /// The one boundary: the code, and the log line. The server's own
    /// faults are errors in its log; limits reached are warnings (an
    /// operator may want to raise them); a client's mistakes are only
    /// debug lines, since any client can send any number of them. Refused
    /// sign-ins are the sign-in limit's to log, a line a minute per peer.
    fn from(error: ServiceError) -> Self {
        let code = error.code();
        match code {
            Code::Internal => tracing::error!(%error, "request failed"),
            _ if matches!(error, ServiceError::SignIn(_)) => {
                tracing::debug!(%error, ?code, "sign-in refused")
            }
            Code::ResourceExhausted | Code::DeadlineExceeded => {
                tracing::warn!(%error, "request refused")
            }
            _ => tracing::debug!(%error, ?code, "request refused"),
        }
        Status::new(code, bounded(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_quoting_a_huge_input_is_cut_at_a_character_boundary() {
        let huge = format!("unknown column {}", "\u{1F9EC}".repeat(1 << 18));
        let status = Status::from(ServiceError::InvalidArgument(huge));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("unknown column "));
        assert!(status.message().len() < MAX_MESSAGE_BYTES + 64);
        assert!(status.message().ends_with("more bytes cut)"));
        let short = Status::from(ServiceError::Unimplemented("no DoExchange".into()));
        assert_eq!(short.message(), "no DoExchange");
    }

    #[test]
    fn engine_and_sql_failures_get_the_code_of_their_kind() {
        let stale = EngineError::StaleTicket {
            dataset: "pbmc".into(),
            ticket_version: "v1".into(),
            current_version: "v2".into(),
        };
        assert_eq!(
            Status::from(ServiceError::from(stale)).code(),
            Code::FailedPrecondition
        );
        let missing = SqlError::NotFound {
            what: "dataset tahoe".into(),
        };
        assert_eq!(
            Status::from(ServiceError::from(missing)).code(),
            Code::NotFound
        );
        let panicked = EngineError::TaskFailed {
            task: "producing a partition",
            reason: "panicked".into(),
        };
        assert_eq!(
            Status::from(ServiceError::from(panicked)).code(),
            Code::Internal
        );
    }
}
