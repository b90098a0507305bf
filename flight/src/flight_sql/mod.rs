//! Flight SQL for notebooks and BI tools (the ADBC Flight SQL driver):
//! statements, prepared statements with bound parameters, and the catalog
//! metadata `adbc_get_objects` and `adbc_get_table_schema` read. Every query
//! runs under the same read-only rules and limits as `{"sql": ...}`.

mod handle;

use std::sync::{Arc, LazyLock};

use arrow_array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery,
    CommandStatementQuery, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{Schema, SchemaRef};
use cellflight_engine::Caller;
use cellflight_sql::{describe_query, CATALOG};
use futures::{stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::ServiceError;
use crate::request_size_limit::{over_limit, whole_put_within};
use crate::shared::Shared;
use crate::sql_answers::{query_info, query_stream};
use handle::StatementHandle;

/// The only table type: every table is a dataset's `cells` or `genes`.
const TABLE_TYPE: &str = "TABLE";

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut info = SqlInfoDataBuilder::new();
    info.append(SqlInfo::FlightSqlServerName, "cellflight");
    info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    // The Arrow columnar format version (Schema.fbs MetadataVersion V5).
    info.append(SqlInfo::FlightSqlServerArrowVersion, "1.5");
    info.append(SqlInfo::FlightSqlServerReadOnly, true);
    info.append(SqlInfo::FlightSqlServerSql, true);
    info.append(SqlInfo::FlightSqlServerSubstrait, false);
    info.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    info.append(SqlInfo::FlightSqlServerCancel, false);
    info.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    info.append(SqlInfo::SqlDdlCatalog, false);
    info.append(SqlInfo::SqlDdlSchema, false);
    info.append(SqlInfo::SqlDdlTable, false);
    #[allow(clippy::expect_used, reason = "a fixed list of valid entries")]
    info.build().expect("static SQL info builds")
});

#[derive(Debug)]
pub(crate) struct FlightSqlFrontEnd {
    shared: Arc<Shared>,
}

impl FlightSqlFrontEnd {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn statement_info(
        &self,
        handle: &StatementHandle,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.shared.auth.caller_of(&request)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode()?,
        };
        let ticket = Ticket::new(ticket.as_any().encode_to_vec());
        let (engine, descriptor) = (&self.shared.engine, request.into_inner());
        let info = query_info(engine, &caller, &handle.sql, descriptor, ticket).await?;
        Ok(Response::new(info))
    }

    async fn run(
        &self,
        handle: &[u8],
        request: &Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let caller = self.shared.auth.caller_of(request)?;
        let handle = StatementHandle::decode(handle)?;
        let parameters = handle.parameter_values()?;
        let engine = &self.shared.engine;
        Ok(Response::new(
            query_stream(engine, &caller, &handle.sql, &parameters).await?,
        ))
    }

    /// (dataset, table, schema) of every table `caller` reaches, in name order.
    fn tables(&self, caller: &Caller) -> Vec<(String, &'static str, SchemaRef)> {
        let snapshot = self.shared.engine.snapshot(caller);
        let mut tables = Vec::new();
        for dataset in snapshot.datasets() {
            let name = dataset.name().to_string();
            tables.push((name.clone(), "cells", dataset.cells_schema()));
            tables.push((name, "genes", dataset.genes_schema()));
        }
        tables
    }

    /// The parameter batches of a DoPut, read within --max-request-size
    /// (each message and all together).
    async fn read_parameters(
        &self,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<Vec<RecordBatch>, ServiceError> {
        let limit = self.shared.max_request_bytes;
        let messages = whole_put_within(request.into_inner().map_err(FlightError::from), limit);
        FlightRecordBatchStream::new_from_flight_data(messages)
            .try_collect()
            .await
            .map_err(|error| unreadable_parameters(error, limit))
    }
}

type DoGetStream = <FlightSqlFrontEnd as FlightService>::DoGetStream;

/// Bound parameters that could not be read: a message or the whole DoPut
/// over --max-request-size of `limit` bytes, or not Arrow IPC.
fn unreadable_parameters(error: FlightError, limit: usize) -> ServiceError {
    match error {
        FlightError::ExternalError(error) => match error.downcast::<ServiceError>() {
            Ok(refusal) => *refusal,
            Err(other) => ServiceError::InvalidArgument(format!("unreadable parameters: {other}")),
        },
        FlightError::Tonic(status) => over_limit(&status, limit).unwrap_or_else(|| {
            ServiceError::InvalidArgument(format!("unreadable parameters: {status}"))
        }),
        other => ServiceError::InvalidArgument(format!("unreadable parameters: {other}")),
    }
}

/// A FlightInfo whose one endpoint's ticket is the metadata command itself.
fn metadata_info(
    command: &impl ProstMessageExt,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let ticket = Ticket::new(command.as_any().encode_to_vec());
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(ServiceError::from)?
        .with_descriptor(descriptor)
        .with_endpoint(FlightEndpoint::new().with_ticket(ticket));
    Ok(Response::new(info))
}

fn batch_stream(
    schema: SchemaRef,
    batch: Result<RecordBatch, FlightError>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(ServiceError::from)?;
    let messages = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::once(async { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(messages.boxed()))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(ServiceError::from)?;
    Ok(bytes)
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlFrontEnd {
    type FlightService = FlightSqlFrontEnd;

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::new(query.query);
        self.statement_info(&handle, request).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let handle = StatementHandle::decode(&query.prepared_statement_handle)?;
        self.statement_info(&handle, request).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.run(&ticket.statement_handle, &request).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.run(&query.prepared_statement_handle, &request).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.shared.auth.caller_of(&request)?;
        let engine = &self.shared.engine;
        let (_snapshot, ctx) = engine.sql_session(&caller).map_err(ServiceError::from)?;
        let (schema, parameters) = describe_query(&ctx, &query.query, engine.sql())
            .await
            .map_err(ServiceError::from)?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: StatementHandle::new(query.query).encode()?,
            dataset_schema: ipc_schema(&schema)?,
            parameter_schema: ipc_schema(&parameters)?,
        })
    }

    /// Handles hold no server state: closing has nothing to free.
    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Ok(())
    }

    /// Binds the parameters sent (one row) by returning a new handle that
    /// carries them.
    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let handle = StatementHandle::decode(&query.prepared_statement_handle)?;
        let batches = self.read_parameters(request).await?;
        let handle = match batches.as_slice() {
            [] => handle,
            [first, ..] => {
                let parameters = arrow_select::concat::concat_batches(&first.schema(), &batches)
                    .map_err(|e| {
                        ServiceError::InvalidArgument(format!(
                            "the parameter batches do not share one schema: {e}"
                        ))
                    })?;
                handle.with_parameters(parameters)?
            }
        };
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle.encode()?),
        })
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        let caller = self.shared.auth.caller_of(&request)?;
        for dataset in self.shared.engine.snapshot(&caller).datasets() {
            builder.append(CATALOG, dataset.name());
        }
        batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        for (dataset, table, schema) in self.tables(&self.shared.auth.caller_of(&request)?) {
            builder
                .append(CATALOG, dataset, table, TABLE_TYPE, &schema)
                .map_err(ServiceError::from)?;
        }
        batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let mut builder = query.into_builder();
        builder.append(TABLE_TYPE);
        batch_stream(builder.schema(), builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        metadata_info(&query, &schema, request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let builder = query.into_builder(&SQL_INFO);
        batch_stream(builder.schema(), builder.build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
