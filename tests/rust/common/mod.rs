//! A server in-process, as arrow-flight's own tests do it: bound to an
//! ephemeral port, shut down through a channel when the fixture drops.

use std::path::Path;

use cellflight::cli::Cli;
use cellflight_generate::{generate, GenerateOptions};
use clap::Parser;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

pub struct TestServer {
    pub address: String,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// `cellflight serve --data DATA` on 127.0.0.1:0.
    pub async fn start(data: &Path) -> Self {
        let state = cellflight::server_state(&serve_args(data)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("grpc://{}", listener.local_addr().unwrap());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = cellflight::router(&state).await;
        let served = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            address,
            shutdown: Some(shutdown),
            served: Some(served),
        }
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap();
    }
}

/// The flags of `cellflight serve --data DATA`.
pub fn serve_args(data: &Path) -> cellflight::cli::ServeArgs {
    let argv = ["cellflight", "serve", "--data", data.to_str().unwrap()];
    match Cli::parse_from(argv).command {
        cellflight::cli::Command::Serve(args) => args,
        _ => unreachable!("parsed a serve command"),
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A generated dataset `root/name` of `cells` cells and 100 genes.
pub fn dataset(root: &Path, name: &str, cells: u64) -> std::path::PathBuf {
    let mut options = GenerateOptions::new(root.join(name), cells);
    options.genes = 100;
    options.seed = 3;
    generate(&options, &|_| {}).unwrap();
    root.join(name)
}
