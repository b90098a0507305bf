//! A server built from a [`ServiceConfig`]: the engine, the Flight service
//! over it behind its layers (failures counted, request size limited,
//! callers authenticated), and the gRPC health service, ready to serve on
//! any listener. Listening, signals and shutdown belong to the program
//! that embeds it (`cellflight serve`, a test).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use cellflight_engine::{Engine, EngineError};
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};
use tower::layer::util::{Identity, Stack};

use crate::auth::{Authenticate, Authenticator, UsersError};
use crate::config::{ConnectionLimits, ServiceConfig, TlsFiles};
use crate::memory_budget::MemoryBudget;
use crate::metrics::CountFailures;
use crate::replicas::Replicas;
use crate::request_size_limit::RequestSizeLimit;
use crate::service::CellflightService;
use crate::shared::Shared;
use crate::stream_slots::StreamSlots;

/// Why a server could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("users file {path}: {source}")]
    UsersFile { path: PathBuf, source: UsersError },
    #[error("users file {path}: no users: nobody could call the server")]
    NoUsers { path: PathBuf },
    #[error("auth token: {0}")]
    Token(UsersError),
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// What every call passes through, outermost first: failures counted,
/// oversized requests answered, callers authenticated.
pub type Layers = Stack<Authenticate, Stack<RequestSizeLimit, Stack<CountFailures, Identity>>>;

#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    tls: Option<ServerTlsConfig>,
    connections: ConnectionLimits,
}

impl Server {
    /// Opens the datasets and reads the users and TLS files of `config`.
    pub fn new(config: &ServiceConfig) -> Result<Self, ServerError> {
        let auth = Authenticator::from_config(&config.auth)?;
        let tls = config.tls.as_ref().map(tls_config).transpose()?;
        let shared = Shared {
            engine: Arc::new(Engine::new(&config.engine)?),
            auth,
            streams: StreamSlots::new(config.streams),
            memory: MemoryBudget::new(config.max_memory_bytes),
            metrics: Arc::default(),
            max_request_bytes: config.max_request_bytes,
            replicas: Replicas::new(&config.replicas),
        };
        Ok(Self {
            shared: Arc::new(shared),
            tls,
            connections: config.connections,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// Whether callers must present a token.
    pub fn authenticates(&self) -> bool {
        self.shared.auth.is_on()
    }

    pub fn serves_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// DoGet streams open now.
    pub fn open_streams(&self) -> usize {
        self.shared.streams.open()
    }

    /// The server's counters, in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let memory_reserved = self.shared.memory.reserved();
        self.shared.metrics.render(
            self.open_streams(),
            memory_reserved,
            self.engine().remote_reads(),
        )
    }

    /// The services over TCP: with TLS if configured.
    pub async fn router(&self) -> Result<Router<Layers>, ServerError> {
        self.router_with(self.tls.clone()).await
    }

    /// The services over a Unix socket, which its file permissions guard:
    /// TLS adds nothing there.
    pub async fn unix_router(&self) -> Result<Router<Layers>, ServerError> {
        self.router_with(None).await
    }

    async fn router_with(
        &self,
        tls: Option<ServerTlsConfig>,
    ) -> Result<Router<Layers>, ServerError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<FlightServiceServer<CellflightService>>()
            .await;
        let shared = &self.shared;
        let service = FlightServiceServer::new(CellflightService::new(Arc::clone(shared)))
            .max_decoding_message_size(shared.max_request_bytes);
        let connections = &self.connections;
        let mut server = tonic::transport::Server::builder()
            .max_concurrent_streams(connections.max_streams_per_connection)
            .http2_keepalive_interval(Some(connections.keepalive_interval))
            .http2_keepalive_timeout(Some(connections.keepalive_timeout));
        if let Some(tls) = tls {
            server = server.tls_config(tls.timeout(connections.tls_handshake_timeout))?;
        }
        Ok(server
            .layer(CountFailures::new(Arc::clone(&shared.metrics)))
            .layer(RequestSizeLimit::new(shared.max_request_bytes))
            .layer(Authenticate::new(shared.auth.clone()))
            .add_service(health_service)
            .add_service(service))
    }
}

/// The TLS identity (and client CA) of `files`, read now.
fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, ServerError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile {
            path: path.to_owned(),
            source,
        })
    };
    let identity = TlsIdentity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}
