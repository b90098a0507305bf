//! What a Flight server is built from: plain values, filled by the
//! `cellflight serve` flags (one function there), by tests, or by a program
//! embedding the service. Secrets never show in its `Debug` form.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use cellflight_engine::EngineConfig;

use crate::replicas::ReplicaConfig;
use crate::stream_slots::StreamLimits;

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub engine: EngineConfig,
    pub streams: StreamLimits,
    pub connections: ConnectionLimits,
    /// What open training streams may hold at their worst, together
    /// (docs/operations.md has the server's whole memory as a formula).
    pub max_memory_bytes: u64,
    /// Largest message a client may send (a request, a ticket), and largest
    /// DoPut (bound query parameters), all its messages together; more is
    /// refused with RESOURCE_EXHAUSTED.
    pub max_request_bytes: usize,
    pub auth: AuthConfig,
    /// Serve TLS; none: plain TCP.
    pub tls: Option<TlsFiles>,
    /// The replicas serving the same data, listed as endpoint locations.
    pub replicas: ReplicaConfig,
}

impl ServiceConfig {
    /// The datasets under `data`, with the defaults of `cellflight serve`:
    /// no authentication, no TLS.
    pub fn new(data: impl AsRef<std::path::Path>) -> Self {
        Self {
            engine: EngineConfig::new(data),
            streams: StreamLimits {
                max_streams: 256,
                max_streams_per_client: 64,
                idle_timeout: Duration::from_secs(30 * 60),
            },
            max_memory_bytes: 8 << 30,
            connections: ConnectionLimits {
                max_streams_per_connection: 128,
                keepalive_interval: Duration::from_secs(60),
                keepalive_timeout: Duration::from_secs(20),
                tls_handshake_timeout: Duration::from_secs(10),
            },
            max_request_bytes: 16 << 20,
            auth: AuthConfig::default(),
            tls: None,
            replicas: ReplicaConfig::default(),
        }
    }
}

/// What one connection may hold, and how a silent one is found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Calls open at once on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// How often the server pings a connection (HTTP/2 keepalive), so a
    /// peer that vanished without closing it is found out.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed
    /// and its streams freed.
    pub keepalive_timeout: Duration,
    /// How long a client may take over its TLS handshake.
    pub tls_handshake_timeout: Duration,
}

/// Who may call (docs/operations.md). With neither, anyone who reaches the
/// port reads every dataset.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// Users and their bearer tokens, passwords and dataset grants (JSON,
    /// readable by its owner only).
    pub users_file: Option<PathBuf>,
    /// One bearer token reading every dataset.
    pub token: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("users_file", &self.users_file)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// PEM files of the server's TLS identity, and of the CA that signs client
/// certificates when clients must present one (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_of_a_config_never_shows_the_token() {
        let mut config = ServiceConfig::new("/data");
        config.auth.token = Some("s3cret-token-0123456789".into());
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
