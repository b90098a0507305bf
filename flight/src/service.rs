//! The Arrow Flight service: datasets listed, and the training stream of
//! docs/protocol.md (GetFlightInfo plans it, DoGet serves one partition).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use cellflight_engine::{Caller, Plan};
use cellflight_schemas::{DatasetMetadata, StreamTicket};
use futures::stream::{self, BoxStream};
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::auth::AUTHORIZATION;
use crate::command::Command;
use crate::do_get::{Produced, QueryDeadline, Served};
use crate::error::ServiceError;
use crate::flight_sql::FlightSqlFrontEnd;
use crate::replicas::rotated;
use crate::shared::Shared;
use crate::sql_answers::{query_info, query_stream};
use crate::stream_slots::Client;

/// The one Flight service of a server: JSON descriptors and tickets (the
/// training stream and `{"sql": ...}`, docs/protocol.md) are served here,
/// Flight SQL's protobuf commands by [`FlightSqlFrontEnd`], the way
/// InfluxDB 3 shares one port.
#[derive(Debug)]
pub(crate) struct CellflightService {
    shared: Arc<Shared>,
    flight_sql: FlightSqlFrontEnd,
}

impl CellflightService {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            flight_sql: FlightSqlFrontEnd::new(Arc::clone(&shared)),
            shared,
        }
    }

    /// What a DoGet ticket names: a Flight SQL or `{"sql": ...}` result,
    /// or a partition of a training stream.
    /// When a query started now must end (--sql-timeout), read or not.
    fn query_deadline(&self) -> QueryDeadline {
        QueryDeadline::after(self.shared.engine.sql().limits().timeout)
    }

    async fn produce(&self, request: Request<Ticket>, caller: &Caller) -> Result<Produced, Status> {
        let ticket = match Command::of_ticket(&request.get_ref().ticket)? {
            Command::FlightSql => {
                let deadline = self.query_deadline();
                let messages = self.flight_sql.do_get(request).await?.into_inner();
                return Ok(Produced::query(messages, deadline));
            }
            Command::Sql(sql) => {
                let deadline = self.query_deadline();
                let messages = query_stream(&self.shared.engine, caller, &sql.sql, &[]).await?;
                return Ok(Produced::query(messages, deadline));
            }
            Command::Stream(ticket) => ticket,
        };
        Ok(self.partition(caller, ticket).await?)
    }

    /// The partition `ticket` names, planned again from the ticket.
    async fn partition(
        &self,
        caller: &Caller,
        ticket: StreamTicket,
    ) -> Result<Produced, ServiceError> {
        let engine = &self.shared.engine;
        let plan = engine.plan_ticket(caller, &ticket).await?;
        let span = tracing::Span::current();
        span.record("dataset", plan.dataset().name());
        span.record("partition", ticket.partition);
        tracing::info!(
            cohort = plan.cohort_size(),
            start_batch = ticket.start_batch,
            batches = plan.batches_per_partition(),
            "stream starts"
        );
        let reservation = self.shared.memory.reserve(plan.stream_memory_bytes())?;
        let partition = engine.partition(Arc::new(plan), ticket.partition, ticket.start_batch)?;
        Ok(Produced::partition(partition, reservation))
    }

    /// Reopens the data directory; answers the datasets now served, with
    /// their versions.
    async fn refresh(&self, caller: &Caller) -> Result<arrow_flight::Result, ServiceError> {
        let snapshot = self.shared.engine.refresh(caller).await?;
        let versions: serde_json::Map<String, serde_json::Value> = snapshot
            .datasets()
            .map(|d| (d.name().to_string(), d.version().into()))
            .collect();
        let body = serde_json::json!({ "datasets": versions }).to_string();
        Ok(arrow_flight::Result::new(body))
    }
}

/// A planned stream as Flight describes it: one endpoint a partition,
/// listing the `replicas` rotated by its partition as locations, the
/// plan's metadata as app_metadata (docs/protocol.md).
fn plan_info(
    plan: &Plan,
    descriptor: FlightDescriptor,
    replicas: &[String],
) -> Result<FlightInfo, ServiceError> {
    let info = FlightInfo::new()
        .try_with_schema(plan.schema())?
        .with_descriptor(descriptor)
        .with_total_records(plan.total_records() as i64)
        .with_app_metadata(plan.metadata().to_json());
    let endpoints = plan.tickets().map(|ticket| {
        let locations = rotated(replicas, ticket.partition as usize);
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.to_json()));
        locations
            .into_iter()
            .fold(endpoint, FlightEndpoint::with_location)
    });
    Ok(endpoints.fold(info, FlightInfo::with_endpoint))
}

/// The action that reloads the catalog (also done on SIGHUP).
const REFRESH: &str = "refresh";

/// One entry of `ListFlights`: the dataset (or collection), its size, and
/// its cells schema.
fn dataset_info(dataset: &cellflight_store::Served) -> Result<FlightInfo, ServiceError> {
    let command = serde_json::json!({ "dataset": dataset.name() }).to_string();
    let metadata = DatasetMetadata {
        version: dataset.version().to_string(),
        n_cells: dataset.n_cells(),
        n_genes: dataset.n_genes(),
        nnz: dataset.nnz(),
    };
    Ok(FlightInfo::new()
        .try_with_schema(&dataset.cells_schema())?
        .with_descriptor(FlightDescriptor::new_cmd(command))
        .with_total_records(dataset.n_cells() as i64)
        .with_app_metadata(metadata.to_json()))
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not served by this version of cellflight"))
}

pub(crate) type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

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
        let caller = self.shared.auth.caller_of(&request)?;
        let snapshot = self.shared.engine.snapshot(&caller);
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
        let peer = Client::peer_of(&request);
        let token = self
            .shared
            .auth
            .handshake(&peer, request.metadata())
            .await?;
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
        let stream_request = match Command::of_descriptor(&request.get_ref().cmd)? {
            Command::FlightSql => return self.flight_sql.get_flight_info(request).await,
            Command::Sql(sql) => {
                let caller = self.shared.auth.caller_of(&request)?;
                let ticket = Ticket::new(sql.to_json());
                let (engine, descriptor) = (&self.shared.engine, request.into_inner());
                let info = query_info(engine, &caller, &sql.sql, descriptor, ticket).await?;
                return Ok(Response::new(info));
            }
            Command::Stream(stream_request) => stream_request,
        };
        let caller = self.shared.auth.caller_of(&request)?;
        let plan = self.shared.engine.plan(&caller, stream_request).await;
        let plan = plan.map_err(ServiceError::from)?;
        let replicas = self.shared.replicas.uris().await;
        Ok(Response::new(plan_info(
            &plan,
            request.into_inner(),
            &replicas,
        )?))
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

    /// Every stream passes through [`Served`], which holds its slot of
    /// [`StreamSlots`](crate::stream_slots) while it is open.
    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let caller = self.shared.auth.caller_of(&request)?;
        let client = Client::of(&request, &caller);
        let span = tracing::info_span!(
            "do_get",
            peer = %client,
            user = caller.user.as_deref(),
            dataset = tracing::field::Empty,
            partition = tracing::field::Empty,
        );
        let slot = self.shared.streams.acquire(client)?;
        let produced = self
            .produce(request, &caller)
            .instrument(span.clone())
            .await?;
        let metrics = Arc::clone(&self.shared.metrics);
        let idle_timeout = self.shared.streams.limits().idle_timeout;
        Ok(Response::new(Box::pin(Served::new(
            produced,
            slot,
            idle_timeout,
            metrics,
            span,
        ))))
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
            let caller = self.shared.auth.caller_of(&request)?;
            let result = self.refresh(&caller).await?;
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
