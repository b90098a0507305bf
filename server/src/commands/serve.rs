//! `cellflight serve`: the Flight service over a data directory, or over a
//! demo dataset generated into the cache on first run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use cellflight_generate::{generate, GenerateOptions};
use cellflight_sql::{CohortCache, SqlEngine, SqlLimits};
use futures::FutureExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};

use super::CommandError;
use crate::catalog::Catalog;
use crate::cli::{ServeArgs, SqlArgs};
use crate::flight::CellflightService;
use crate::progress::Progress;
use crate::state::ServerState;
use crate::stream::{ColumnCache, WeightedCache};

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
    }))
}

fn sql_engine(args: &SqlArgs) -> Result<SqlEngine, CommandError> {
    let limits = SqlLimits {
        memory_bytes: args.memory.0 as usize,
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
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let unix = match &args.unix {
        Some(path) => Some((bind_unix(path)?, path.clone())),
        None => None,
    };
    tracing::info!(%address, unix = ?args.unix, catalog = ?state.catalog.snapshot(), "serving");
    refresh_on_hangup(Arc::clone(&state))?;
    print_try_it(&address.to_string(), args.unix.as_deref());
    let shutdown = shutdown_signal().shared();
    let tcp = router(&state)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.clone());
    let served = match unix {
        None => tcp.await,
        Some((listener, path)) => {
            let unix = router(&state)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown);
            let served = tokio::try_join!(tcp, unix).map(|_| ());
            let _ = std::fs::remove_file(path);
            served
        }
    };
    served.map_err(|e| CommandError::Serve(format!("server failed: {e}")))
}

/// The Flight service (training stream, SQL, Flight SQL) over `state`,
/// ready to serve on any listener.
pub fn router(state: &Arc<ServerState>) -> tonic::transport::server::Router {
    let service = FlightServiceServer::new(CellflightService::new(Arc::clone(state)))
        .max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder().add_service(service)
}

/// Largest message a client may send (a request, a ticket, bound parameters).
const MAX_REQUEST_BYTES: usize = 16 << 20;

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

fn print_try_it(address: &str, unix: Option<&Path>) {
    println!("cellflight listening on grpc://{address}");
    if let Some(path) = unix {
        println!("cellflight listening on grpc+unix://{}", path.display());
    }
    println!("try it from Python (pip install pyarrow):");
    println!("    import json, pyarrow.flight as flight");
    println!("    client = flight.connect(\"grpc://{address}\")");
    println!("    print([json.loads(i.descriptor.command) for i in client.list_flights()])");
    println!("    info = client.get_flight_info(flight.FlightDescriptor.for_command('{{\"batch_size\": 64}}'))");
    println!("    for chunk in client.do_get(info.endpoints[0].ticket):");
    println!("        print(chunk.data.num_rows, \"cells, first ids\", chunk.data.column(\"cell_id\")[:3])");
    println!("        break");
}

async fn shutdown_signal() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
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
