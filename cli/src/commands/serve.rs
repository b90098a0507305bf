//! `cellflight serve`: the Flight service over a data directory, or over a
//! demo dataset generated into the cache on first run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use cellflight_engine::{Caller, EngineConfig};
use cellflight_flight::{
    lingering_close, AuthConfig, ConnectionLimits, Layers, ReplicaConfig, Server, ServerError,
    ServiceConfig, StreamLimits, TlsFiles,
};
use cellflight_generate::{generate, GenerateOptions};
use cellflight_sql::SqlLimits;
use cellflight_store::{DataLocation, RemoteCatalogConfig};
use futures::FutureExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;

use super::CommandError;
use crate::cli::{ReplicaArgs, SecurityArgs, ServeArgs};
use crate::progress::Progress;

/// The demo dataset: Tahoe-shaped, big enough to feel real, quick to make.
const DEMO_CELLS: u64 = 100_000;
const DEMO_NAME: &str = "demo";

pub(super) fn run(args: ServeArgs) -> Result<(), CommandError> {
    let (data, cache) = match &args.data {
        Some(data) => {
            // Only a remote --data uses the cache; without a home, the
            // temporary directory will do.
            let cache = cache_dir(args.cache_dir.as_deref())
                .unwrap_or_else(|_| std::env::temp_dir().join("cellflight"));
            (data.clone(), cache)
        }
        None => {
            let cache = cache_dir(args.cache_dir.as_deref())?;
            (DataLocation::Local(ensure_demo(&cache)?), cache)
        }
    };
    let server = Server::new(&service_config(&args, data, &cache))
        .map_err(|error| startup_error(&args.security, error))?;
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Serve(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(Arc::new(server), &args))
}

/// A server that cannot start, told in terms of the flag to fix.
fn startup_error(security: &SecurityArgs, error: ServerError) -> CommandError {
    let flag = match &error {
        // The engine's errors name the directory or setting themselves.
        ServerError::Engine(_) => return CommandError::Serve(error.to_string()),
        ServerError::UsersFile { .. } | ServerError::NoUsers { .. } => "--auth-file",
        ServerError::Token(_) => "--auth-token",
        ServerError::TlsFile { path, .. } if security.tls_key.as_ref() == Some(path) => "--tls-key",
        ServerError::TlsFile { path, .. } if security.tls_client_ca.as_ref() == Some(path) => {
            "--tls-client-ca"
        }
        ServerError::TlsFile { .. } | ServerError::Tls(_) => "--tls-cert",
    };
    CommandError::Serve(format!("{flag}: {error}"))
}

/// The flags of `cellflight serve`, as the server's configuration: the one
/// place flags become settings.
fn service_config(args: &ServeArgs, data: DataLocation, cache: &Path) -> ServiceConfig {
    let sql = &args.sql;
    ServiceConfig {
        engine: EngineConfig {
            data,
            remote_cache: RemoteCatalogConfig {
                cache_dir: cache.to_owned(),
                cache_bytes: args.cache_size.0,
            },
            vocabularies: args.vocabularies.clone(),
            default_dataset: args.default_dataset.clone(),
            sql: SqlLimits {
                memory_bytes: sql.memory.0 as usize,
                query_memory_bytes: sql.query_memory.0 as usize,
                timeout: *sql.timeout,
                max_rows: sql.max_rows,
                planning_threads: sql.planning_threads as usize,
            },
            spill_dir: sql.spill_dir.clone(),
            cohort_cache_bytes: sql.cohort_cache.0 as usize,
            column_cache_bytes: args.column_cache.0 as usize,
        },
        streams: StreamLimits {
            max_streams: args.max_streams as usize,
            max_streams_per_client: args.max_streams_per_client as usize,
            idle_timeout: *args.stream_idle_timeout,
        },
        max_memory_bytes: args.max_memory.0,
        connections: ConnectionLimits {
            max_streams_per_connection: args.max_streams_per_connection,
            keepalive_interval: *args.keepalive_interval,
            keepalive_timeout: *args.keepalive_timeout,
            tls_handshake_timeout: *args.security.tls_handshake_timeout,
        },
        max_request_bytes: args.max_request_size.0 as usize,
        auth: AuthConfig {
            users_file: args.security.auth_file.clone(),
            token: args.security.auth_token.clone(),
        },
        tls: tls_files(&args.security),
        replicas: replica_config(&args.replicas),
    }
}

fn replica_config(args: &ReplicaArgs) -> ReplicaConfig {
    ReplicaConfig {
        advertise: args.advertise.clone(),
        peers: args.peers.clone(),
        peers_dns: args.peers_dns.clone(),
        dns_server: args.dns_server,
    }
}

fn tls_files(args: &SecurityArgs) -> Option<TlsFiles> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return None;
    };
    Some(TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
    })
}

/// Reloads the catalog on every SIGHUP, as the `refresh` action does.
fn refresh_on_hangup(server: &Server) -> Result<(), CommandError> {
    let mut hangups = signal(SignalKind::hangup())
        .map_err(|e| CommandError::Serve(format!("cannot watch SIGHUP: {e}")))?;
    let engine = Arc::clone(server.engine());
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if let Err(error) = engine.refresh(&Caller::anyone()).await {
                tracing::error!(%error, "refresh on SIGHUP failed");
            }
        }
    });
    Ok(())
}

async fn serve(server: Arc<Server>, args: &ServeArgs) -> Result<(), CommandError> {
    warn_if_exposed(&server, args);
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let unix = args.unix.as_deref().map(bind_unix).transpose()?;
    let secured = server.serves_tls() || server.authenticates();
    let scheme = if server.serves_tls() {
        "grpc+tls"
    } else {
        "grpc"
    };
    let router_failed = |e: cellflight_flight::ServerError| CommandError::Serve(e.to_string());
    let tcp = (server.router().await.map_err(router_failed)?, listener);
    let unix = match unix {
        Some(unix) => Some((server.unix_router().await.map_err(router_failed)?, unix)),
        None => None,
    };
    let metrics = match args.metrics {
        Some(address) => Some(bind_metrics(address, &server).await?),
        None => None,
    };
    let catalog = server.engine().snapshot(&Caller::anyone());
    tracing::info!(%address, unix = ?args.unix, ?metrics, ?catalog, "serving");
    refresh_on_hangup(&server)?;
    print_try_it(
        &format!("{scheme}://{address}"),
        args.unix.as_deref(),
        metrics,
        secured,
    );
    let served = serve_until_shutdown(&server, tcp, unix, *args.shutdown_grace);
    let served = served.await;
    if let Some(path) = &args.unix {
        let _ = std::fs::remove_file(path);
    }
    served
}

/// Serves until SIGINT or SIGTERM, then until the open streams end or
/// `grace` is over, whichever comes first. A connection closes only once
/// its client has read the end of its last stream (`lingering_close`).
async fn serve_until_shutdown(
    server: &Server,
    (tcp_router, tcp): (Router<Layers>, TcpListener),
    unix: Option<(Router<Layers>, UnixListener)>,
    grace: std::time::Duration,
) -> Result<(), CommandError> {
    let shutdown = shutdown_signal().shared();
    let tcp = tcp_router.serve_with_incoming_shutdown(
        lingering_close(TcpListenerStream::new(tcp)),
        shutdown.clone(),
    );
    let unix = unix.map(|(router, unix)| {
        router.serve_with_incoming_shutdown(
            lingering_close(UnixListenerStream::new(unix)),
            shutdown.clone(),
        )
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
            let open_streams = server.open_streams();
            tracing::warn!(open_streams, ?grace, "grace period over; closing the open streams");
            Ok(())
        }
    }
}

/// Says so when the port is reachable from other hosts without a key or
/// with keys sent in clear text.
fn warn_if_exposed(server: &Server, args: &ServeArgs) {
    if args.listen.ip().is_loopback() {
        return;
    }
    if !server.authenticates() {
        tracing::warn!(listen = %args.listen, "no authentication: anyone who reaches this address reads every dataset (--auth-file)");
    } else if !server.serves_tls() {
        tracing::warn!(listen = %args.listen, "tokens travel in clear text without TLS (--tls-cert, --tls-key)");
    }
}

/// Starts serving metrics at `address`; answers the address bound.
async fn bind_metrics(
    address: SocketAddr,
    server: &Arc<Server>,
) -> Result<SocketAddr, CommandError> {
    let error = |e: std::io::Error| CommandError::Serve(format!("--metrics {address}: {e}"));
    let listener = TcpListener::bind(address).await.map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    tokio::spawn(serve_metrics(listener, Arc::clone(server)));
    Ok(bound)
}

/// `GET /metrics` on `listener`, in Prometheus' text format.
async fn serve_metrics(listener: TcpListener, server: Arc<Server>) {
    async fn metrics(State(server): State<Arc<Server>>) -> impl IntoResponse {
        let text = server.metrics_text();
        ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
    }
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .with_state(server);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cellflight_flight::ReplicaUri;
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Subcommand};

    fn local(dir: &str) -> DataLocation {
        DataLocation::Local(dir.into())
    }

    fn serve_args(flags: &[&str]) -> ServeArgs {
        let argv = ["cellflight", "serve"].iter().chain(flags);
        match Cli::try_parse_from(argv).unwrap().subcommand {
            Subcommand::Serve(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn the_flags_defaults_are_the_configs_defaults() {
        let config = service_config(&serve_args(&[]), local("/data"), Path::new("/cache"));
        let mut expected = ServiceConfig::new("/data");
        expected.engine.remote_cache.cache_dir = "/cache".into();
        assert_eq!(config, expected);
    }

    #[test]
    fn every_flag_reaches_the_config() {
        let args = serve_args(&[
            "--default-dataset=pbmc",
            "--column-cache=3MiB",
            "--max-streams=7",
            "--max-streams-per-client=3",
            "--stream-idle-timeout=5min",
            "--max-memory=300MiB",
            "--max-streams-per-connection=11",
            "--keepalive-interval=12s",
            "--keepalive-timeout=13s",
            "--tls-handshake-timeout=14s",
            "--max-request-size=1MiB",
            "--auth-file=/etc/users.json",
            "--tls-cert=/c.pem",
            "--tls-key=/k.pem",
            "--tls-client-ca=/ca.pem",
            "--sql-memory=5MiB",
            "--sql-query-memory=4MiB",
            "--sql-timeout=2s",
            "--sql-max-rows=9",
            "--sql-planning-threads=3",
            "--spill-dir=/spill",
            "--cohort-cache=6MiB",
            "--cache-size=7MiB",
        ]);
        let config = service_config(&args, local("/data"), Path::new("/cache"));
        let engine = &config.engine;
        assert_eq!(
            engine.remote_cache,
            RemoteCatalogConfig {
                cache_dir: "/cache".into(),
                cache_bytes: 7 << 20
            }
        );
        assert_eq!(engine.default_dataset.as_deref(), Some("pbmc"));
        assert_eq!(engine.column_cache_bytes, 3 << 20);
        assert_eq!(engine.cohort_cache_bytes, 6 << 20);
        assert_eq!(
            engine.sql,
            SqlLimits {
                memory_bytes: 5 << 20,
                query_memory_bytes: 4 << 20,
                timeout: Duration::from_secs(2),
                max_rows: 9,
                planning_threads: 3,
            }
        );
        assert_eq!(engine.spill_dir.as_deref(), Some(Path::new("/spill")));
        assert_eq!(config.streams.max_streams, 7);
        assert_eq!(config.streams.max_streams_per_client, 3);
        assert_eq!(config.streams.idle_timeout, Duration::from_secs(300));
        assert_eq!(config.max_memory_bytes, 300 << 20);
        assert_eq!(
            config.connections,
            ConnectionLimits {
                max_streams_per_connection: 11,
                keepalive_interval: Duration::from_secs(12),
                keepalive_timeout: Duration::from_secs(13),
                tls_handshake_timeout: Duration::from_secs(14),
            }
        );
        assert_eq!(config.max_request_bytes, 1 << 20);
        assert_eq!(
            config.auth.users_file.as_deref(),
            Some(Path::new("/etc/users.json"))
        );
        let tls = config.tls.unwrap();
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/ca.pem")));
    }

    #[test]
    fn the_replica_flags_reach_the_config() {
        let args = serve_args(&[
            "--advertise=grpc://10.0.0.1:50051",
            "--peers=grpc://10.0.0.2:50051,grpc://10.0.0.3:50051",
            "--peers-dns=cellflight.default.svc:50051",
        ]);
        let replicas = service_config(&args, local("/data"), Path::new("/cache")).replicas;
        let uri = |text: &str| text.parse::<ReplicaUri>().unwrap();
        assert_eq!(replicas.advertise, Some(uri("grpc://10.0.0.1:50051")));
        assert_eq!(
            replicas.peers,
            [uri("grpc://10.0.0.2:50051"), uri("grpc://10.0.0.3:50051")]
        );
        assert_eq!(replicas.peers_dns.unwrap().host, "cellflight.default.svc");
    }

    #[test]
    fn peers_need_advertise() {
        for flags in [
            ["--peers=grpc://10.0.0.2:50051"],
            ["--peers-dns=cellflight:50051"],
        ] {
            let argv = ["cellflight", "serve"].iter().chain(&flags);
            let error = Cli::try_parse_from(argv).unwrap_err().to_string();
            assert!(error.contains("--advertise <URI>"), "{error}");
        }
    }

    #[test]
    fn a_bad_advertise_uri_is_refused_naming_it() {
        let argv = ["cellflight", "serve", "--advertise=http://10.0.0.1:80"];
        let error = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(error.contains("--advertise <URI>"), "{error}");
        assert!(error.contains("\"http://10.0.0.1:80\""), "{error}");
    }
}
