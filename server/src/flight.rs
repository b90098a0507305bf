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
use tracing::Instrument;

use arrow_flight::sql::Any;
use cellflight_schemas::{StreamRequest, StreamTicket};
use cellflight_sql::Access;
use prost::Message;

use crate::adhoc::SqlRequest;
use crate::auth::{Caller, AUTHORIZATION};
use crate::catalog::resolve;
use crate::error::ServiceError;
use crate::flight_sql::FlightSqlFrontEnd;
use crate::query::{query_info, query_stream};
use crate::state::ServerState;
use crate::stream::{stream_partition, StreamPlan};
use crate::stream_slots::Client;

/// The one Flight service of a server: JSON descriptors and tickets (the
/// training stream and `{"sql": ...}`, docs/protocol.md) are served here,
/// Flight SQL's protobuf commands by [`FlightSqlFrontEnd`], the way
/// InfluxDB 3 shares one port.
pub struct CellflightService {
    state: Arc<ServerState>,
    flight_sql: FlightSqlFrontEnd,
}

impl CellflightService {
    pub fn new(state: Arc<ServerState>) -> Self {
        Self {
            flight_sql: FlightSqlFrontEnd::new(Arc::clone(&state)),
            state,
        }
    }

    /// The stream a DoGet ticket names: a Flight SQL or `{"sql": ...}`
    /// result, or a partition of a training stream.
    async fn open_stream(
        &self,
        request: Request<Ticket>,
        caller: &Caller,
    ) -> Result<Boxed<FlightData>, Status> {
        let ticket = &request.get_ref().ticket;
        if let Command::FlightSql = command_kind(ticket, "ticket")? {
            return Ok(self.flight_sql.do_get(request).await?.into_inner());
        }
        let access = &caller.access;
        if SqlRequest::is_sql(ticket) {
            let sql = SqlRequest::from_json(ticket)?;
            return Ok(query_stream(&self.state, access, &sql.sql, &[]).await?);
        }
        let ticket = StreamTicket::from_json(ticket).map_err(ServiceError::from)?;
        let snapshot = self.state.snapshot(access);
        let dataset = resolve(&snapshot, ticket.request.dataset.as_deref())?;
        let current = &dataset.manifest().version;
        if *current != ticket.dataset_version {
            return Err(ServiceError::FailedPrecondition(format!(
                "the ticket is for version {} of dataset {}, which now has version {current}; plan again with GetFlightInfo",
                ticket.dataset_version,
                dataset.manifest().name
            ))
            .into());
        }
        let span = tracing::Span::current();
        span.record("dataset", dataset.manifest().name.as_str());
        span.record("partition", ticket.partition);
        let plan = StreamPlan::build(&self.state, &snapshot, dataset, ticket.request).await?;
        let fetches = plan.fetches(ticket.partition, ticket.start_batch)?;
        tracing::info!(
            cohort = plan.cohort.len(),
            start_batch = ticket.start_batch,
            batches = plan.sampler.batches_per_partition(),
            "stream starts"
        );
        let metrics = Arc::clone(&self.state.metrics);
        let stream = stream_partition(Arc::new(plan), fetches, ticket.partition, metrics);
        Ok(Box::pin(stream))
    }

    /// Reopens the data directory; answers the datasets now served, with
    /// their versions. It changes what everyone sees, so with grants
    /// configured only a caller granted every dataset may.
    async fn refresh(&self, access: &Access) -> Result<arrow_flight::Result, ServiceError> {
        if *access != Access::All {
            return Err(ServiceError::PermissionDenied(
                "refresh reloads every dataset: it needs a token granted them all".into(),
            ));
        }
        let state = Arc::clone(&self.state);
        let snapshot = tokio::task::spawn_blocking(move || state.catalog.refresh())
            .await
            .map_err(|e| ServiceError::Internal(format!("refresh failed: {e}")))??;
        let versions: serde_json::Map<String, serde_json::Value> = snapshot
            .datasets()
            .map(|d| {
                (
                    d.manifest().name.to_string(),
                    d.manifest().version.clone().into(),
                )
            })
            .collect();
        let body = serde_json::json!({ "datasets": versions }).to_string();
        Ok(arrow_flight::Result::new(body))
    }
}

/// The action that reloads the catalog (also done on SIGHUP).
const REFRESH: &str = "refresh";

/// What a descriptor's command or a ticket holds.
enum Command {
    /// JSON: a training stream or `{"sql": ...}` (docs/protocol.md).
    Json,
    /// A Flight SQL message: a protobuf `Any` of a Flight SQL type.
    FlightSql,
}

const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// JSON starts with `{` (after any whitespace); a Flight SQL command is a
/// protobuf `Any` whose type URL names a Flight SQL message. Anything else
/// is refused here, rather than reported as a protobuf decoding failure.
fn command_kind(bytes: &[u8], what: &str) -> Result<Command, ServiceError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        return Ok(Command::Json);
    }
    match Any::decode(bytes) {
        Ok(any) if any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX) => Ok(Command::FlightSql),
        _ => Err(ServiceError::InvalidArgument(format!(
            "invalid {what}: neither a JSON object (docs/protocol.md) nor a Flight SQL command"
        ))),
    }
}

/// One entry of `ListFlights`: the dataset, its size, and its cells schema.
fn dataset_info(dataset: &Dataset) -> Result<FlightInfo, ServiceError> {
    let m = dataset.manifest();
    let command = serde_json::json!({ "dataset": m.name.as_str() }).to_string();
    let metadata = serde_json::json!({
        "version": m.version,
        "n_cells": m.n_cells,
        "n_genes": m.n_genes,
        "nnz": m.nnz,
    });
    Ok(FlightInfo::new()
        .try_with_schema(dataset.cells_table().schema())?
        .with_descriptor(FlightDescriptor::new_cmd(command))
        .with_total_records(m.n_cells as i64)
        .with_app_metadata(metadata.to_string()))
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not served by this version of cellflight"))
}

pub type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

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
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let snapshot = self
            .state
            .snapshot(&self.state.auth.caller_of(&request)?.access);
        let infos: Vec<_> = snapshot
            .datasets()
            .map(|d| dataset_info(d).map_err(Status::from))
            .collect();
        Ok(Response::new(Box::pin(stream::iter(infos))))
    }

    /// Basic credentials in, the bearer token out: in the `authorization`
    /// response header (where pyarrow and ADBC look) and as the payload.
    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let token = self
            .state
            .auth
            .handshake(request.metadata())
            .inspect_err(|error| {
                tracing::warn!(peer = %Client::of(&request), %error, "sign-in refused");
            })?;
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| ServiceError::Internal("a token is not a header value".into()))?;
        let answer = HandshakeResponse {
            protocol_version: 0,
            payload: token.into(),
        };
        let mut response =
            Response::new(Box::pin(stream::iter([Ok(answer)])) as Self::HandshakeStream);
        response.metadata_mut().insert(AUTHORIZATION, bearer);
        Ok(response)
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        if let Command::FlightSql = command_kind(&request.get_ref().cmd, "request")? {
            return self.flight_sql.get_flight_info(request).await;
        }
        let access = self.state.auth.caller_of(&request)?.access;
        let descriptor = request.into_inner();
        if SqlRequest::is_sql(&descriptor.cmd) {
            let sql = SqlRequest::from_json(&descriptor.cmd)?;
            let ticket = Ticket::new(sql.to_json());
            let info = query_info(&self.state, &access, &sql.sql, descriptor, ticket).await?;
            return Ok(Response::new(info));
        }
        let request = StreamRequest::from_json(&descriptor.cmd).map_err(ServiceError::from)?;
        let snapshot = self.state.snapshot(&access);
        let dataset = resolve(&snapshot, request.dataset.as_deref())?;
        let plan = StreamPlan::build(&self.state, &snapshot, dataset, request).await?;
        Ok(Response::new(plan.flight_info(descriptor)?))
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

    /// Every stream holds a slot of [`StreamSlots`](crate::stream_slots)
    /// while it is open.
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let client = Client::of(&request);
        let caller = self.state.auth.caller_of(&request)?;
        let span = tracing::info_span!(
            "do_get",
            peer = %client,
            user = caller.user.as_deref(),
            dataset = tracing::field::Empty,
            partition = tracing::field::Empty,
        );
        let slot = self.state.streams.acquire(client)?;
        let stream = self.open_stream(request, &caller).instrument(span).await?;
        self.state.metrics.stream_started();
        Ok(Response::new(Box::pin(slot.hold(stream))))
    }

    /// Only Flight SQL binds parameters with DoPut; data is never written.
    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.flight_sql.do_put(request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        if request.get_ref().r#type == REFRESH {
            let access = self.state.auth.caller_of(&request)?.access;
            let result = self.refresh(&access).await?;
            return Ok(Response::new(Box::pin(stream::iter([Ok(result)]))));
        }
        self.flight_sql.do_action(request).await
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            (REFRESH, "Reopen the data directory: new and replaced datasets are served, removed ones go. Result: JSON {\"datasets\": {name: version}}"),
            ("CreatePreparedStatement", "Flight SQL: prepare a query (placeholders ? or $1, $2, ...)"),
            ("ClosePreparedStatement", "Flight SQL: release a prepared statement"),
        ];
        let actions = actions.map(|(kind, description)| {
            Ok(ActionType {
                r#type: kind.into(),
                description: description.into(),
            })
        });
        Ok(Response::new(Box::pin(stream::iter(actions))))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        Err(not_yet("DoExchange"))
    }
}
