//! A server in-process, as arrow-flight's own tests do it: bound to an
//! ephemeral port, shut down through a channel when the fixture drops.

use std::path::Path;

use cellflight::cli::ServeArgs;
use cellflight_generate::{generate, GenerateOptions};
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
        Self::start_with(&serve_args(data)).await
    }

    /// `cellflight serve` with `args` on 127.0.0.1:0; with TLS, its
    /// address is grpc+tls://localhost:PORT (the name certificates carry).
    pub async fn start_with(args: &ServeArgs) -> Self {
        let state = cellflight::server_state(args).unwrap();
        let tls = cellflight::tls_config(&args.security).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let address = match tls {
            Some(_) => format!("grpc+tls://localhost:{port}"),
            None => format!("grpc://127.0.0.1:{port}"),
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = cellflight::router(&state, tls).await.unwrap();
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

    /// A plain gRPC channel to the server (not TLS), for services other
    /// than Flight.
    pub async fn channel(&self) -> tonic::transport::Channel {
        let http = self.address.replacen("grpc://", "http://", 1);
        tonic::transport::Endpoint::from_shared(http)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Stops the server and waits until it has.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.served.take().unwrap().await.unwrap();
    }
}

/// The flags of `cellflight serve --data DATA`, then `more`.
pub fn serve_args_with(data: &Path, more: &[&str]) -> ServeArgs {
    let data = data.to_str().unwrap();
    ServeArgs::from_flags(["--data", data].iter().chain(more)).unwrap()
}

/// The flags of `cellflight serve --data DATA`.
pub fn serve_args(data: &Path) -> ServeArgs {
    serve_args_with(data, &[])
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
