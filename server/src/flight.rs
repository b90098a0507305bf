//! The Arrow Flight service. So far it lists the datasets it serves; the
//! training stream (GetFlightInfo/DoGet) is specified in docs/protocol.md
//! and built on this service.

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

use crate::catalog::Catalog;

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
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(not_yet("GetFlightInfo"))
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
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(not_yet("DoGet"))
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
