//! The Arrow Flight service: datasets listed, and the training stream of
//! docs/protocol.md (GetFlightInfo plans it, DoGet serves one partition).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use cellflight_store::Dataset;
use futures::stream::{self, BoxStream};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use arrow_flight::FlightEndpoint;
use arrow_ipc::writer::DictionaryTracker;
use cellflight_sampler::{Fetches, Plan};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::catalog::Catalog;
use crate::error::ServiceError;
use crate::stream::{
    encode_minibatches, minibatch_schema, schema_message, FetchReader, StreamRequest, StreamTicket,
};

pub struct CellflightService {
    catalog: Arc<Catalog>,
}

impl CellflightService {
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

/// One entry of `ListFlights`: the dataset, its size, and its cells schema.
fn dataset_info(dataset: &Dataset) -> Result<FlightInfo, Status> {
    let m = dataset.manifest();
    let command = serde_json::json!({ "dataset": m.name.as_str() }).to_string();
    let metadata = serde_json::json!({
        "version": m.version,
        "n_cells": m.n_cells,
        "n_genes": m.n_genes,
        "nnz": m.nnz,
    });
    let cells = dataset
        .cells()
        .map_err(|e| Status::internal(e.to_string()))?;
    FlightInfo::new()
        .try_with_schema(cells.schema())
        .map_err(|e| Status::internal(e.to_string()))
        .map(|info| {
            info.with_descriptor(FlightDescriptor::new_cmd(command))
                .with_total_records(m.n_cells as i64)
                .with_app_metadata(metadata.to_string())
        })
}

/// Largest minibatch a request may ask for, in the worst case.
const MAX_MINIBATCH_BYTES: u64 = 64 << 20;

fn plan(dataset: &Dataset, request: &StreamRequest) -> Result<Plan, ServiceError> {
    let manifest = dataset.manifest();
    let matrix = manifest.matrix.as_ref().ok_or_else(|| {
        ServiceError::FailedPrecondition(format!(
            "dataset {} is obs-only: it has no matrix to stream",
            manifest.name
        ))
    })?;
    let entry_bytes = (matrix.index_type.arrow().primitive_width().unwrap_or(4)
        + matrix.value_type.byte_width()) as u64;
    let worst = u64::from(request.batch_size) * (manifest.n_genes * entry_bytes + 16);
    if worst > MAX_MINIBATCH_BYTES {
        return Err(ServiceError::InvalidArgument(format!(
            "a minibatch of {} cells could reach {worst} bytes ({} genes), above the {MAX_MINIBATCH_BYTES}-byte limit; lower batch_size",
            request.batch_size, manifest.n_genes
        )));
    }
    Ok(Plan::new(manifest.n_cells, &request.sampler_config())?)
}

fn flight_info(
    dataset: &Dataset,
    request: StreamRequest,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, ServiceError> {
    let plan = plan(dataset, &request)?;
    let manifest = dataset.manifest();
    let matrix = dataset.matrix().expect("plan() checked the matrix");
    let metadata = serde_json::json!({
        "cohort_size": manifest.n_cells,
        "batches_per_partition": plan.batches_per_partition(),
        "seed": request.seed,
        "dataset_version": manifest.version,
    });
    let endpoints = (0..request.partitions).map(|partition| {
        let ticket = StreamTicket {
            request: request.clone(),
            partition,
            dataset_version: manifest.version.clone(),
            start_batch: 0,
        };
        FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_json()))
    });
    let info = FlightInfo::new()
        .try_with_schema(&minibatch_schema(matrix.schema()))?
        .with_descriptor(descriptor)
        .with_total_records(plan.total_records() as i64)
        .with_app_metadata(metadata.to_string());
    Ok(endpoints.fold(info, FlightInfo::with_endpoint))
}

/// Reads, assembles and encodes one partition's minibatches on a blocking
/// thread; the bounded channel paces it to the client. A client that goes
/// away closes the channel, which ends this loop and frees the stream.
fn produce(
    dataset: &Dataset,
    fetches: Fetches,
    partition: u32,
    sender: mpsc::Sender<Result<FlightData, Status>>,
) {
    let matrix = dataset.matrix().expect("plan() checked the matrix");
    let reader = FetchReader::new(matrix);
    let mut tracker = DictionaryTracker::new(false);
    let send = |message| sender.blocking_send(message).is_ok();
    if !send(Ok(schema_message(&minibatch_schema(matrix.schema())))) {
        return;
    }
    for fetch in fetches {
        let minibatches = match reader.minibatches(&fetch) {
            Ok(minibatches) => minibatches,
            Err(error) => {
                send(Err(error.into()));
                return;
            }
        };
        for (index, batch) in minibatches {
            let messages = match encode_minibatches(&batch, partition, index, &mut tracker) {
                Ok(messages) => messages,
                Err(error) => {
                    send(Err(error.into()));
                    return;
                }
            };
            if !messages.into_iter().all(|message| send(Ok(message))) {
                tracing::debug!(partition, "client went away; stream freed");
                return;
            }
        }
    }
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not served by this version of cellflight"))
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlightService for CellflightService {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;
    type DoExchangeStream = Boxed<FlightData>;

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos: Vec<_> = self.catalog.datasets().map(|d| dataset_info(d)).collect();
        Ok(Response::new(Box::pin(stream::iter(infos))))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        Err(not_yet("Handshake"))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let descriptor = request.into_inner();
        let stream = StreamRequest::from_json(&descriptor.cmd)?;
        let dataset = self.catalog.resolve(stream.dataset.as_deref())?;
        Ok(Response::new(flight_info(dataset, stream, descriptor)?))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(not_yet("PollFlightInfo"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        Err(not_yet("GetSchema"))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let ticket = StreamTicket::from_json(&request.into_inner().ticket)?;
        let dataset = self.catalog.resolve(ticket.request.dataset.as_deref())?;
        let current = &dataset.manifest().version;
        if *current != ticket.dataset_version {
            return Err(ServiceError::FailedPrecondition(format!(
                "the ticket is for version {} of dataset {}, which now has version {current}; plan again with GetFlightInfo",
                ticket.dataset_version,
                dataset.manifest().name
            ))
            .into());
        }
        let plan = plan(dataset, &ticket.request)?;
        let fetches = plan
            .fetches(ticket.partition, ticket.start_batch)
            .map_err(ServiceError::from)?;
        // One fetch's minibatches queue while the next fetch is read.
        let (sender, receiver) = mpsc::channel(ticket.request.fetch_factor as usize + 1);
        let dataset = Arc::clone(dataset);
        let partition = ticket.partition;
        tokio::task::spawn_blocking(move || produce(&dataset, fetches, partition, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented(
            "cellflight is read-only: DoPut is not accepted",
        ))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        Err(not_yet("DoAction"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        Ok(Response::new(Box::pin(stream::empty())))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(not_yet("DoExchange"))
    }
}
