//! `cellflight serve`: the Flight service over a data directory, or over a
//! demo dataset generated into the cache on first run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use cellflight_generate::{generate, GenerateOptions};
use cellflight_sql::{CohortCache, SqlEngine, SqlLimits};
use futures::FutureExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;
use tonic::transport::{Certificate, Identity as TlsIdentity, ServerTlsConfig};
use tower::layer::util::{Identity, Stack};

use super::CommandError;
use crate::auth::{Authenticate, Authenticator, User, Users, ENV_TOKEN_USER};
use crate::catalog::Catalog;
use crate::cli::{SecurityArgs, ServeArgs, SqlArgs};
use crate::flight::CellflightService;
use crate::metrics::CountFailures;
use crate::progress::Progress;
use crate::request_size::RequestSizeLimit;
use crate::state::ServerState;
use crate::stream::{ColumnCache, WeightedCache};
use crate::stream_slots::{StreamLimits, StreamSlots};

/// The demo dataset: Tahoe-shaped, big enough to feel real, quick to make.
const DEMO_CELLS: u64 = 100_000;
const DEMO_NAME: &str = "demo";

pub fn run(args: ServeArgs) -> Result<(), CommandError> {
    let state = server_state(&args)?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Serve(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(state, &args))
}

/// What a server with these flags shares between requests: its catalog
/// (the demo dataset is generated first if there is no --data), SQL engine
/// and caches.
pub fn server_state(args: &ServeArgs) -> Result<Arc<ServerState>, CommandError> {
    let data = match &args.data {
        Some(data) => data.clone(),
        None => ensure_demo(&cache_dir(args.cache_dir.as_deref())?)?,
    };
    let catalog = Catalog::load(&data, args.default_dataset.as_deref())
        .map_err(|e| CommandError::Serve(format!("--data {}: {e}", data.display())))?;
    if catalog.snapshot().datasets().next().is_none() {
        return Err(CommandError::Serve(format!(
            "{}: no datasets found",
            data.display()
        )));
    }
    let cohort_cache = args.sql.cohort_cache.0 as usize;
    Ok(Arc::new(ServerState {
        catalog,
        sql: sql_engine(&args.sql)?,
        cohorts: CohortCache::new(cohort_cache),
        weighted: WeightedCache::new(cohort_cache),
        columns: ColumnCache::new(args.column_cache.0 as usize),
        streams: StreamSlots::new(StreamLimits {
            max_streams: args.max_streams as usize,
            max_streams_per_client: args.max_streams_per_client as usize,
        }),
        metrics: Arc::default(),
        auth: authenticator(&args.security)?,
        max_request_bytes: args.max_request_size.0 as usize,
    }))
}

/// The users of --auth-file and $CELLFLIGHT_AUTH_TOKEN; none: no authentication.
fn authenticator(args: &SecurityArgs) -> Result<Authenticator, CommandError> {
    let mut users = match &args.auth_file {
        Some(path) => Users::from_file(path)
            .map_err(|e| CommandError::Serve(format!("--auth-file {}: {e}", path.display())))?,
        None => Users::default(),
    };
    if let Some(token) = &args.auth_token {
        users
            .add(User::with_token(ENV_TOKEN_USER, token.clone()))
            .map_err(|e| CommandError::Serve(format!("--auth-token: {e}")))?;
    }
    if users.is_empty() {
        if let Some(path) = &args.auth_file {
            return Err(CommandError::Serve(format!(
                "--auth-file {}: no users: nobody could call the server",
                path.display()
            )));
        }
        return Ok(Authenticator::default());
    }
    tracing::info!(users = users.len(), "authentication on");
    Ok(Authenticator::new(users))
}

/// The TLS of --tls-cert, --tls-key and --tls-client-ca, if configured.
pub fn tls_config(args: &SecurityArgs) -> Result<Option<ServerTlsConfig>, CommandError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |flag: &str, path: &Path| {
        std::fs::read(path)
            .map_err(|e| CommandError::Serve(format!("{flag} {}: {e}", path.display())))
    };
    let identity = TlsIdentity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key)?);
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &args.tls_client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("--tls-client-ca", ca)?));
    }
    Ok(Some(config))
}

fn sql_engine(args: &SqlArgs) -> Result<SqlEngine, CommandError> {
    let limits = SqlLimits {
        memory_bytes: args.memory.0 as usize,
        query_memory_bytes: args.query_memory.0 as usize,
        timeout: *args.timeout,
        max_rows: args.max_rows,
    };
    SqlEngine::new(limits, args.spill_dir.clone())
        .map_err(|e| CommandError::Serve(format!("cannot start the SQL engine: {e}")))
}

/// Reloads the catalog on every SIGHUP, as the `refresh` action does.
fn refresh_on_hangup(state: Arc<ServerState>) -> Result<(), CommandError> {
    let mut hangups = signal(SignalKind::hangup())
        .map_err(|e| CommandError::Serve(format!("cannot watch SIGHUP: {e}")))?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let state = Arc::clone(&state);
            match tokio::task::spawn_blocking(move || state.catalog.refresh()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => tracing::error!(%error, "refresh on SIGHUP failed"),
                Err(error) => tracing::error!(%error, "refresh on SIGHUP panicked"),
            }
        }
    });
    Ok(())
}

async fn serve(state: Arc<ServerState>, args: &ServeArgs) -> Result<(), CommandError> {
    let tls = tls_config(&args.security)?;
    warn_if_exposed(&state, args, tls.is_some());
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let unix = args.unix.as_deref().map(bind_unix).transpose()?;
    let secured = tls.is_some() || state.auth.is_on();
    let scheme = if tls.is_some() { "grpc+tls" } else { "grpc" };
    let tcp = (router(&state, tls).await?, listener);
    // The Unix socket is guarded by its file permissions; TLS adds nothing there.
    let unix = match unix {
        Some(unix) => Some((router(&state, None).await?, unix)),
        None => None,
    };
    let metrics = match args.metrics {
        Some(address) => Some(bind_metrics(address, &state).await?),
        None => None,
    };
    tracing::info!(%address, unix = ?args.unix, ?metrics, catalog = ?state.catalog.snapshot(), "serving");
    refresh_on_hangup(Arc::clone(&state))?;
    print_try_it(
        &format!("{scheme}://{address}"),
        args.unix.as_deref(),
        metrics,
        secured,
    );
    let served = serve_until_shutdown(&state, tcp, unix, *args.shutdown_grace);
    let served = served.await;
    if let Some(path) = &args.unix {
        let _ = std::fs::remove_file(path);
    }
    served
}

/// Serves until SIGINT or SIGTERM, then until the open streams end or
/// `grace` is over, whichever comes first.
async fn serve_until_shutdown(
    state: &Arc<ServerState>,
    (tcp_router, tcp): (Router<Layers>, TcpListener),
    unix: Option<(Router<Layers>, UnixListener)>,
    grace: std::time::Duration,
) -> Result<(), CommandError> {
    let shutdown = shutdown_signal().shared();
    let tcp =
        tcp_router.serve_with_incoming_shutdown(TcpListenerStream::new(tcp), shutdown.clone());
    let unix = unix.map(|(router, unix)| {
        router.serve_with_incoming_shutdown(UnixListenerStream::new(unix), shutdown.clone())
    });
    let served = async {
        match unix {
            None => tcp.await,
            Some(unix) => tokio::try_join!(tcp, unix).map(|_| ()),
        }
    };
    let grace_over = async {
        shutdown.clone().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = served => served.map_err(|e| CommandError::Serve(format!("server failed: {e}"))),
        () = grace_over => {
            let open_streams = state.streams.open();
            tracing::warn!(open_streams, ?grace, "grace period over; closing the open streams");
            Ok(())
        }
    }
}

/// What every call passes through, outermost first: failures counted,
/// oversized requests answered, callers authenticated.
pub type Layers = Stack<Authenticate, Stack<RequestSizeLimit, Stack<CountFailures, Identity>>>;

/// The Flight service (training stream, SQL, Flight SQL) over `state`,
/// ready to serve on any listener, with `tls` if given. With it, the
/// standard gRPC health service.
pub async fn router(
    state: &Arc<ServerState>,
    tls: Option<ServerTlsConfig>,
) -> Result<Router<Layers>, CommandError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<FlightServiceServer<CellflightService>>()
        .await;
    let service = FlightServiceServer::new(CellflightService::new(Arc::clone(state)))
        .max_decoding_message_size(state.max_request_bytes);
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| CommandError::Serve(format!("--tls-cert/--tls-key: {e}")))?;
    }
    Ok(server
        .layer(CountFailures::new(Arc::clone(&state.metrics)))
        .layer(RequestSizeLimit::new(state.max_request_bytes))
        .layer(Authenticate::new(state.auth.clone()))
        .add_service(health_service)
        .add_service(service))
}

/// Says so when the port is reachable from other hosts without a key or
/// with keys sent in clear text.
fn warn_if_exposed(state: &ServerState, args: &ServeArgs, tls: bool) {
    if args.listen.ip().is_loopback() {
        return;
    }
    if !state.auth.is_on() {
        tracing::warn!(listen = %args.listen, "no authentication: anyone who reaches this address reads every dataset (--auth-file)");
    } else if !tls {
        tracing::warn!(listen = %args.listen, "tokens travel in clear text without TLS (--tls-cert, --tls-key)");
    }
}

/// Starts serving metrics at `address`; answers the address bound.
async fn bind_metrics(
    address: SocketAddr,
    state: &Arc<ServerState>,
) -> Result<SocketAddr, CommandError> {
    let error = |e: std::io::Error| CommandError::Serve(format!("--metrics {address}: {e}"));
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    tokio::spawn(serve_metrics(listener, Arc::clone(state)));
    Ok(bound)
}

/// `GET /metrics` on `listener`, in Prometheus' text format.
async fn serve_metrics(listener: TcpListener, state: Arc<ServerState>) {
    async fn metrics(State(state): State<Arc<ServerState>>) -> impl IntoResponse {
        let text = state.metrics.render(state.streams.open());
        ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Err(error) = axum::serve(listener, app).await {
        tracing::error!(%error, "the metrics endpoint failed");
    }
}

/// A Unix socket at `path`; a stale socket left by a server that died is
/// replaced, anything else at that path is refused.
fn bind_unix(path: &Path) -> Result<UnixListener, CommandError> {
    use std::os::unix::fs::FileTypeExt;
    let error =
        |e: &dyn std::fmt::Display| CommandError::Serve(format!("--unix {}: {e}", path.display()));
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(error(&"another server is listening on this socket"));
            }
            std::fs::remove_file(path).map_err(|e| error(&e))?;
        }
        Ok(_) => return Err(error(&"exists and is not a socket")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(error(&e)),
    }
    UnixListener::bind(path).map_err(|e| error(&e))
}

/// The addresses served, and a first step from Python. With a key or TLS
/// the snippet would need them too; docs/operations.md shows how.
fn print_try_it(url: &str, unix: Option<&Path>, metrics: Option<SocketAddr>, secured: bool) {
    println!("cellflight listening on {url}");
    if let Some(path) = unix {
        println!("cellflight listening on grpc+unix://{}", path.display());
    }
    if let Some(metrics) = metrics {
        println!("cellflight metrics on http://{metrics}/metrics");
    }
    if secured {
        println!("connect with your token (and CA certificate): see docs/operations.md");
        return;
    }
    println!("try it from Python (pip install pyarrow):");
    println!("    import json, pyarrow.flight as flight");
    println!("    client = flight.connect(\"{url}\")");
    println!("    print([json.loads(i.descriptor.command) for i in client.list_flights()])");
    println!("    info = client.get_flight_info(flight.FlightDescriptor.for_command('{{\"batch_size\": 64}}'))");
    println!("    for chunk in client.do_get(info.endpoints[0].ticket):");
    println!("        print(chunk.data.num_rows, \"cells, first ids\", chunk.data.column(\"cell_id\")[:3])");
    println!("        break");
}

/// SIGINT or SIGTERM: stop accepting, let open streams finish.
async fn shutdown_signal() {
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: no new connections; open streams may finish");
}

fn cache_dir(explicit: Option<&Path>) -> Result<PathBuf, CommandError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_owned());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .ok_or_else(|| {
            CommandError::Serve(
                "no --cache-dir, $XDG_CACHE_HOME or $HOME to keep the demo dataset in".into(),
            )
        })?;
    Ok(base.join("cellflight"))
}

/// The directory holding the demo dataset, generated if absent.
fn ensure_demo(cache: &Path) -> Result<PathBuf, CommandError> {
    let data = cache.join("demo-data");
    let dataset = data.join(DEMO_NAME);
    if !dataset.exists() {
        tracing::info!(
            "generating the demo dataset ({DEMO_CELLS} cells) into {}",
            dataset.display()
        );
        let progress = Progress::new("demo");
        generate(&GenerateOptions::new(&dataset, DEMO_CELLS), &|cells| {
            progress.advance(cells, DEMO_CELLS)
        })?;
        progress.finish();
    }
    Ok(data)
}
