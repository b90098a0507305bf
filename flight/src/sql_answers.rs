//! SQL answers over Flight, shared by the `{"sql": ...}` descriptor and
//! Flight SQL: a FlightInfo planned without reading data, and the result
//! streamed within the server's limits.

use arrow_flight::encode::{DictionaryHandling, FlightDataEncoderBuilder};
use arrow_flight::error::FlightError;
use arrow_flight::{FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use cellflight_engine::{Caller, Engine};
use cellflight_sql::{describe_query, open_query, ScalarValue};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;

use crate::error::ServiceError;

/// The result schema of `sql` and one endpoint serving it with `ticket`.
/// The row count is unknown until the query runs.
pub(crate) async fn query_info(
    engine: &Engine,
    caller: &Caller,
    sql: &str,
    descriptor: FlightDescriptor,
    ticket: Ticket,
) -> Result<FlightInfo, ServiceError> {
    let (_snapshot, ctx) = engine.sql_session(caller)?;
    let (schema, _parameters) = describe_query(&ctx, sql, engine.sql()).await?;
    Ok(FlightInfo::new()
        .try_with_schema(&schema)?
        .with_descriptor(descriptor)
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket)))
}

/// Runs `sql` with `parameters` bound and streams its result. Planning
/// errors are returned now; errors while running (row cap, memory,
/// deadline) end the stream with their status.
pub(crate) async fn query_stream(
    engine: &Engine,
    caller: &Caller,
    sql: &str,
    parameters: &[ScalarValue],
) -> Result<BoxStream<'static, Result<FlightData, Status>>, ServiceError> {
    tracing::info!(sql, parameters = parameters.len(), "query");
    let (_snapshot, ctx) = engine.sql_session(caller)?;
    let results = open_query(&ctx, sql, parameters, engine.sql()).await?;
    let schema = results.schema();
    let batches = results.map_err(|e| FlightError::from(Status::from(ServiceError::from(e))));
    // Categoricals stay dictionary-encoded, as FlightInfo's schema says
    // (the encoder would otherwise hydrate them to plain strings).
    let messages = FlightDataEncoderBuilder::new()
        .with_dictionary_handling(DictionaryHandling::Resend)
        .with_schema(schema)
        .build(batches)
        .map_err(Status::from);
    Ok(messages.boxed())
}
