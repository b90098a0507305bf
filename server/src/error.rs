//! Every failure a client can see, by kind, mapped once to a gRPC status.

use cellflight_sampler::SamplerError;
use cellflight_store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The client's request or ticket is wrong; the message says how.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The ticket is sound but the dataset moved on since it was made.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unimplemented(String),
    /// The server's fault (e.g. an unreadable dataset file), never the client's.
    #[error("{0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::InvalidArgument(_) => Status::invalid_argument(message),
            ServiceError::NotFound(_) => Status::not_found(message),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
            ServiceError::Unimplemented(_) => Status::unimplemented(message),
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
        tracing::error!(%error, "dataset read failed");
        Self::Internal(error.to_string())
    }
}

impl From<arrow_schema::ArrowError> for ServiceError {
    fn from(error: arrow_schema::ArrowError) -> Self {
        tracing::error!(%error, "arrow failed");
        Self::Internal(error.to_string())
    }
}
