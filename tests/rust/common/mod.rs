//! A server in-process, as arrow-flight's own tests do it: bound to an
//! ephemeral port, shut down through a channel when the fixture drops.

use std::path::Path;

use cellflight_flight::{Server, ServiceConfig};
use cellflight_generate::{generate, GenerateOptions};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;

pub struct TestServer {
    pub address: String,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// A server of the datasets under `data`, configured as `cellflight
    /// serve --data DATA` is, on 127.0.0.1:0.
    pub async fn start(data: &Path) -> Self {
        Self::start_with(&ServiceConfig::new(data)).await
    }

    /// A server of `config` on 127.0.0.1:0; with TLS, its address is
    /// grpc+tls://localhost:PORT (the name certificates carry).
    pub async fn start_with(config: &ServiceConfig) -> Self {
        let server = Server::new(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let address = match server.serves_tls() {
            true => format!("grpc+tls://localhost:{port}"),
            false => format!("grpc://127.0.0.1:{port}"),
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let router = server.router().await.unwrap();
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
