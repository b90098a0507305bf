/// What can go wrong talking to a cellflight server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The address is not `grpc://host:port`, `grpc+tls://host:port` or `grpc+unix:///path`.
    #[error("invalid address {address:?}: {reason}")]
    Address { address: String, reason: String },
    /// A token that cannot travel in a header (only printable ASCII can).
    #[error("the token is not printable ASCII")]
    Token,
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
    /// The server answered with an error status (its code and message).
    #[error("the server refused: {0}")]
    Status(#[from] tonic::Status),
    /// A partition's stream ended without an error before its last batch:
    /// the epoch would silently miss cells. Resume it from `next`.
    #[error("the stream of partition {partition} ended before batch {next} of its {end}; resume from start_batch {next}")]
    IncompleteStream { partition: u32, next: u64, end: u64 },
    /// The server's answer does not follow docs/protocol.md.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Every location of a partition's endpoint failed since its last
    /// batch: each location, and why (docs/protocol.md, "Replicas").
    #[error("partition {partition} could not be read from batch {next} at any of its {} locations: {}", .failures.len(), reasons(.failures))]
    Failover {
        partition: u32,
        next: u64,
        failures: Vec<(String, String)>,
    },
    #[error(transparent)]
    Flight(#[from] arrow_flight::error::FlightError),
}

impl ClientError {
    /// The gRPC status the server (or the transport) answered, if any.
    pub fn status_code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            Self::Flight(arrow_flight::error::FlightError::Tonic(status)) => Some(status.code()),
            _ => None,
        }
    }
}

/// `location: why; location: why`.
fn reasons(failures: &[(String, String)]) -> String {
    let reasons: Vec<_> = failures
        .iter()
        .map(|(location, why)| format!("{location}: {why}"))
        .collect();
    reasons.join("; ")
}
