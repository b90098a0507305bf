//! `cellflight-bench`: load and throughput measurements of a cellflight
//! server, and the transport ceiling to compare them with.
//!
//!     cellflight-bench stream --address grpc://127.0.0.1:50051 --request '{"batch_size": 64}' --streams 4
//!     cellflight-bench replay --source grpc://127.0.0.1:50051 --request '{"batch_size": 64}'
//!
//! `stream` reads `--streams` partitions of an epoch plan in parallel, one
//! connection each, epoch after epoch, for `--seconds` after `--warmup`, and
//! prints one JSON line: cells/s and MB/s of minibatches decoded into Arrow
//! arrays.
//! `replay` takes the first minibatch a server sends for a request and
//! serves it again and again to every DoGet (no sampling, no I/O): what the
//! same tonic/arrow-flight stack delivers when the data costs nothing.
//! GetFlightInfo is forwarded to the source, so any client plans as usual.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use cellflight_client::{Client, ClientError, ConnectOptions, MAX_MESSAGE_BYTES};
use cellflight_schemas::StreamRequest;
use clap::{Parser, Subcommand};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};

#[derive(Parser)]
#[command(
    name = "cellflight-bench",
    about = "Load and throughput measurements of a cellflight server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read partitions in parallel, epoch after epoch, and report cells/s and MB/s (JSON).
    Stream {
        /// grpc://host:port, grpc+tls://host:port or grpc+unix:///path
        #[arg(long)]
        address: String,
        /// The bearer token of a server with authentication.
        #[arg(long, env = "CELLFLIGHT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// For grpc+tls://: the PEM CA certificate of the server's (default: the system's CAs).
        #[arg(long, value_name = "PEM")]
        ca_cert: Option<std::path::PathBuf>,
        /// The stream request, JSON (docs/protocol.md); `partitions` is set to --streams.
        #[arg(long, default_value = "{}")]
        request: String,
        /// Partitions read at once, one connection each.
        #[arg(long, default_value_t = 1)]
        streams: u32,
        /// Seconds read before measuring.
        #[arg(long, default_value_t = 5.0)]
        warmup: f64,
        /// Seconds measured.
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Serve the first minibatch of a request again and again (the transport ceiling).
    Replay {
        /// The server to take the minibatch from.
        #[arg(long)]
        source: String,
        #[arg(long, default_value = "{}")]
        request: String,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

type Failure = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Failure> {
    match Cli::parse().command {
        Command::Stream {
            address,
            token,
            ca_cert,
            request,
            streams,
            warmup,
            seconds,
        } => {
            let request = parse_request(&request, streams)?;
            let ca_certificate = match ca_cert {
                Some(path) => Some(
                    std::fs::read(&path)
                        .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let options = ConnectOptions {
                token,
                ca_certificate,
                ..ConnectOptions::default()
            };
            let report = measure(&address, &options, &request, warmup, seconds).await?;
            println!("{report}");
        }
        Command::Replay {
            source,
            request,
            listen,
        } => replay(&source, &parse_request(&request, 1)?, listen).await?,
    }
    Ok(())
}

fn parse_request(json: &str, partitions: u32) -> Result<StreamRequest, Failure> {
    let mut request =
        StreamRequest::from_json(json.as_bytes()).map_err(|e| format!("--request: {e}"))?;
    request.partitions = partitions;
    Ok(request)
}

/// Counts of what the readers decoded while the clock ran.
#[derive(Default)]
struct Tally {
    measuring: AtomicBool,
    stop: AtomicBool,
    cells: AtomicU64,
    bytes: AtomicU64,
}

async fn measure(
    address: &str,
    options: &ConnectOptions,
    request: &StreamRequest,
    warmup: f64,
    seconds: f64,
) -> Result<serde_json::Value, Failure> {
    let tally = Arc::new(Tally::default());
    let mut readers = Vec::new();
    for partition in 0..request.partitions as usize {
        let mut client = Client::connect_with(address, options).await?;
        let (tally, request) = (tally.clone(), request.clone());
        readers.push(tokio::spawn(async move {
            // Epochs roll over, so a partition never runs dry while the
            // clock runs (an epoch of a small dataset lasts seconds).
            for epoch in request.epoch.. {
                let epoch_request = StreamRequest {
                    epoch,
                    ..request.clone()
                };
                let plan = client.plan(&epoch_request).await?;
                let mut minibatches = client
                    .stream_from(
                        &plan.tickets[partition],
                        &plan.locations[partition],
                        plan.batches_per_partition,
                    )
                    .await?;
                while let Some(minibatch) = minibatches.next().await {
                    if tally.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    let data = minibatch?.data;
                    if tally.measuring.load(Ordering::Relaxed) {
                        tally
                            .cells
                            .fetch_add(data.num_rows() as u64, Ordering::Relaxed);
                        tally.bytes.fetch_add(bytes_of(&data), Ordering::Relaxed);
                    }
                }
            }
            Ok::<_, ClientError>(())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    tally.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let (cells, bytes) = (
        tally.cells.load(Ordering::Relaxed),
        tally.bytes.load(Ordering::Relaxed),
    );
    let elapsed = started.elapsed().as_secs_f64();
    tally.stop.store(true, Ordering::Relaxed);
    for reader in readers {
        if reader.is_finished() {
            reader.await??; // a reader that failed fails the measurement
        } else {
            reader.abort();
        }
    }
    Ok(serde_json::json!({
        "client": "rust",
        "address": address,
        "request": serde_json::from_str::<serde_json::Value>(&request.to_json())?,
        "streams": request.partitions,
        "seconds": elapsed,
        "cells": cells,
        "cells_per_s": cells as f64 / elapsed,
        "mb_per_s": bytes as f64 / 1e6 / elapsed,
    }))
}

/// Bytes of the batch's buffers (slices counted by their extent).
fn bytes_of(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

async fn replay(source: &str, request: &StreamRequest, listen: SocketAddr) -> Result<(), Failure> {
    let mut flight = flight_client(source).await?;
    let messages = first_minibatch(&mut flight, request).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("replaying on grpc://{}", listener.local_addr()?);
    let service = FlightServiceServer::new(Replay {
        source: flight,
        messages: Arc::new(messages),
    })
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

async fn flight_client(address: &str) -> Result<FlightServiceClient<Channel>, Failure> {
    let host = address
        .strip_prefix("grpc://")
        .ok_or("--source: expected grpc://host:port")?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}"))?
        .connect()
        .await?;
    Ok(FlightServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// The messages up to and including the first record batch: the schema,
/// any dictionaries, the batch.
async fn first_minibatch(
    flight: &mut FlightServiceClient<Channel>,
    request: &StreamRequest,
) -> Result<Vec<FlightData>, Failure> {
    let descriptor = FlightDescriptor::new_cmd(request.to_json());
    let info = flight.get_flight_info(descriptor).await?.into_inner();
    let ticket = info
        .endpoint
        .first()
        .and_then(|e| e.ticket.clone())
        .ok_or("the plan has no partitions")?;
    let mut stream = flight.do_get(ticket).await?.into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        // A record batch is the first message with app_metadata.
        let is_batch = !message.app_metadata.is_empty();
        messages.push(message);
        if is_batch {
            return Ok(messages);
        }
    }
    Err("the stream ended before its first minibatch".into())
}

struct Replay {
    source: FlightServiceClient<Channel>,
    messages: Arc<Vec<FlightData>>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unserved() -> Status {
    Status::unimplemented("the replay server only answers GetFlightInfo and DoGet")
}

#[tonic::async_trait]
impl FlightService for Replay {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;
    type DoExchangeStream = Boxed<FlightData>;

    /// Every ticket gets the schema and dictionaries, then the same
    /// minibatch forever (cloning FlightData only bumps reference counts).
    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let Some((batch, preamble)) = self.messages.split_last() else {
            return Err(Status::internal("the replay server holds no minibatch"));
        };
        let preamble: Vec<FlightData> = preamble.to_vec();
        let preamble = futures::stream::iter(preamble.into_iter().map(Ok));
        let batches = futures::stream::repeat(batch.clone()).map(Ok);
        Ok(Response::new(Box::pin(preamble.chain(batches))))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(unserved())
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        Err(unserved())
    }
    /// The source's plan, so clients plan as usual.
    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.source
            .clone()
            .get_flight_info(request.into_inner())
            .await
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(unserved())
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(unserved())
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(unserved())
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(unserved())
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Err(unserved())
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(unserved())
    }
}
