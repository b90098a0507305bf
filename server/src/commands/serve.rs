//! `cellflight serve`: the Flight service over a data directory, or over a
//! demo dataset generated into the cache on first run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use cellflight_generate::{generate, GenerateOptions};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::CommandError;
use crate::catalog::Catalog;
use crate::cli::ServeArgs;
use crate::flight::CellflightService;
use crate::progress::Progress;

/// The demo dataset: Tahoe-shaped, big enough to feel real, quick to make.
const DEMO_CELLS: u64 = 100_000;
const DEMO_NAME: &str = "demo";

pub fn run(args: ServeArgs) -> Result<(), CommandError> {
    let data = match &args.data {
        Some(data) => data.clone(),
        None => ensure_demo(&cache_dir(args.cache_dir.as_deref())?)?,
    };
    let catalog = Arc::new(Catalog::load(&data)?);
    if catalog.len() == 0 {
        return Err(CommandError::Serve(format!(
            "{}: no datasets found",
            data.display()
        )));
    }
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| CommandError::Serve(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(catalog, &args))
}

async fn serve(catalog: Arc<Catalog>, args: &ServeArgs) -> Result<(), CommandError> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let address = listener
        .local_addr()
        .map_err(|e| CommandError::Serve(format!("--listen {}: {e}", args.listen)))?;
    let names: Vec<String> = catalog
        .datasets()
        .map(|d| d.manifest().name.to_string())
        .collect();
    tracing::info!(%address, datasets = ?names, "serving");
    print_try_it(&address.to_string());
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::new(CellflightService::new(catalog)))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
        .await
        .map_err(|e| CommandError::Serve(format!("server failed: {e}")))
}

fn print_try_it(address: &str) {
    println!("cellflight listening on grpc://{address}");
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
