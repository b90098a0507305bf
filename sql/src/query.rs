//! Read-only, bounded SQL: one query statement, a row cap and a deadline.

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast;
use futures::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::SqlError;
use crate::session::{SqlEngine, SqlLimits};
use crate::shape::check_shape;

const READ_ONLY: &str = "this service only runs read-only queries";

/// A query's result, collected.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Runs one read-only query and collects its result, within `engine`'s limits.
pub async fn run_query(
    ctx: &SessionContext,
    sql: &str,
    parameters: &[ScalarValue],
    engine: &SqlEngine,
) -> Result<QueryResult, SqlError> {
    let mut stream = open_query(ctx, sql, parameters, engine).await?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        batches.push(batch?);
    }
    Ok(QueryResult { schema, batches })
}

/// The schemas of one read-only query's result and of its parameters
/// (`$1`, `$2`, ... in order; `Null` where the query does not fix a type),
/// from its plan alone: nothing is read.
pub async fn describe_query(
    ctx: &SessionContext,
    sql: &str,
    engine: &SqlEngine,
) -> Result<(SchemaRef, SchemaRef), SqlError> {
    let limits = engine.limits();
    let deadline = Instant::now() + limits.timeout;
    let (ctx, sql, memory) = (ctx.clone(), sql.to_string(), limits.memory_bytes);
    let planning = async move { plan_query(&ctx, &sql, memory).await };
    let plan = engine
        .planning()
        .run(deadline, limits.timeout, planning)
        .await?;
    let parameters = plan
        .get_parameter_types()
        .map_err(|e| SqlError::from_datafusion(e, limits.memory_bytes))?;
    let mut parameters: Vec<(usize, Option<DataType>)> = parameters
        .into_iter()
        .map(|(id, data_type)| (placeholder_position(&id), data_type))
        .collect();
    parameters.sort_by_key(|(position, _)| *position);
    let fields: Vec<Field> = parameters
        .into_iter()
        .map(|(position, data_type)| {
            Field::new(
                format!("${position}"),
                data_type.unwrap_or(DataType::Null),
                true,
            )
        })
        .collect();
    Ok((plan.schema().inner().clone(), Arc::new(Schema::new(fields))))
}

/// `$3` → 3; named placeholders (which `single_query` never lets through
/// unnumbered) sort last.
fn placeholder_position(id: &str) -> usize {
    id.strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// Plans one read-only query (on the planning pool), binds `parameters` to
/// its placeholders, and starts it; the stream enforces the row cap and
/// the deadline (which counts from this call).
pub async fn open_query(
    ctx: &SessionContext,
    sql: &str,
    parameters: &[ScalarValue],
    engine: &SqlEngine,
) -> Result<BoundedStream, SqlError> {
    let limits = engine.limits();
    let deadline = Instant::now() + limits.timeout;
    let planning = started(
        ctx.clone(),
        sql.to_string(),
        parameters.to_vec(),
        limits.clone(),
    );
    let inner = engine
        .planning()
        .run(deadline, limits.timeout, planning)
        .await?;
    Ok(BoundedStream::new(inner, limits, deadline))
}

/// The plan of `sql` with `parameters` bound, started.
async fn started(
    ctx: SessionContext,
    sql: String,
    parameters: Vec<ScalarValue>,
    limits: SqlLimits,
) -> Result<SendableRecordBatchStream, SqlError> {
    let df_error = |e| SqlError::from_datafusion(e, limits.memory_bytes);
    let plan = plan_query(&ctx, &sql, limits.memory_bytes).await?;
    let plan = bind(plan, &parameters, limits.memory_bytes)?;
    // One row past the cap tells "exactly at the cap" from "over it"
    // without computing the rest (a sort becomes a top-k). EXPLAIN must
    // stay the root of its plan; its output is small anyway.
    let explains = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
    let cap = (!explains).then(|| limits.max_rows.saturating_add(1));
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .and_then(|df| match cap {
            Some(cap) => df.limit(0, Some(cap)),
            None => Ok(df),
        })
        .map_err(df_error)?;
    df.execute_stream().await.map_err(df_error)
}

/// `plan` with `parameters` bound to its placeholders (none: left as is,
/// and a placeholder left unbound fails as it runs). The values must be as
/// many as the highest placeholder number: DataFusion would quietly ignore
/// extra ones, and a Flight SQL handle, which the client carries, can hold
/// any number.
fn bind(
    plan: LogicalPlan,
    parameters: &[ScalarValue],
    memory_bytes: usize,
) -> Result<LogicalPlan, SqlError> {
    if parameters.is_empty() {
        return Ok(plan);
    }
    let df_error = |e| SqlError::from_datafusion(e, memory_bytes);
    let placeholders = plan
        .get_parameter_types()
        .map_err(df_error)?
        .keys()
        .map(|id| placeholder_position(id))
        .max()
        .unwrap_or(0);
    if placeholders != parameters.len() {
        return Err(SqlError::InvalidQuery(format!(
            "the query has {placeholders} placeholders and {} parameters are bound: bind one value for each",
            parameters.len()
        )));
    }
    plan.with_param_values(parameters.to_vec())
        .map_err(df_error)
}

/// The logical plan of `sql`, if it is exactly one read-only query.
pub(crate) async fn plan_query(
    ctx: &SessionContext,
    sql: &str,
    memory_bytes: usize,
) -> Result<LogicalPlan, SqlError> {
    let statement = single_query(sql)?;
    let df_error = |e| SqlError::from_datafusion(e, memory_bytes);
    let plan = ctx
        .state()
        .statement_to_plan(statement)
        .await
        .map_err(df_error)?;
    // Defence in depth: the statement check above is an allow-list, this
    // walks the plan (subqueries included) for anything that writes.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    options
        .verify_plan(&plan)
        .map_err(|e| SqlError::refused("statement", e.to_string()))?;
    Ok(plan)
}

/// Parses `sql` and accepts only one statement, and only a query. Its `?`
/// placeholders (what ODBC/JDBC/ADBC clients send) become `$1`, `$2`, ...
/// in order, the form DataFusion binds.
pub(crate) fn single_query(sql: &str) -> Result<Statement, SqlError> {
    check_shape(sql, "a query")?;
    let mut statements = DFParser::parse_sql(sql).map_err(|e| SqlError::from_datafusion(e, 0))?;
    let count = statements.len();
    let (Some(mut statement), None) = (statements.pop_front(), statements.pop_front()) else {
        return Err(SqlError::refused(
            format!("{count} statements"),
            "send exactly one statement per request",
        ));
    };
    check_read_only(&statement)?;
    if let Statement::Statement(inner) = &mut statement {
        check_no_file_tables(inner)?;
        number_placeholders(inner)?;
    }
    Ok(statement)
}

fn number_placeholders(statement: &mut ast::Statement) -> Result<(), SqlError> {
    let (mut question_marks, mut numbered) = (0usize, false);
    let _ = ast::visit_expressions_mut(statement, |expr| {
        if let ast::Expr::Value(ast::ValueWithSpan {
            value: ast::Value::Placeholder(id),
            ..
        }) = expr
        {
            if id == "?" {
                question_marks += 1;
                *id = format!("${question_marks}");
            } else {
                numbered = true;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if question_marks > 0 && numbered {
        return Err(SqlError::InvalidQuery(
            "use either ? or $1, $2, ... placeholders in one query, not both".into(),
        ));
    }
    Ok(())
}

/// A table named like a path or URL (`SELECT * FROM '/etc/passwd'`) is
/// refused by name: the only tables are the datasets' own.
fn check_no_file_tables(statement: &ast::Statement) -> Result<(), SqlError> {
    let mut refused = None;
    let _ = ast::visit_relations(statement, |name| {
        let text = name.to_string();
        if text.contains('/') || text.contains(':') {
            refused = Some(text);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    match refused {
        Some(table) => Err(SqlError::refused(
            format!("the table {table}"),
            "files and URLs cannot be read; the tables are each dataset's cells and genes",
        )),
        None => Ok(()),
    }
}

fn check_read_only(statement: &Statement) -> Result<(), SqlError> {
    match statement {
        Statement::Statement(s)
            if matches!(
                **s,
                ast::Statement::Query(_)
                    | ast::Statement::ShowTables { .. }
                    | ast::Statement::ShowColumns { .. }
            ) =>
        {
            Ok(())
        }
        Statement::Explain(e) => check_read_only(&e.statement),
        Statement::Statement(s) => Err(SqlError::refused(statement_name(s), READ_ONLY)),
        Statement::CreateExternalTable(_) => Err(SqlError::refused(
            "CREATE EXTERNAL TABLE",
            "tables are the datasets' cells and genes; files and URLs cannot be attached",
        )),
        Statement::CopyTo(_) => Err(SqlError::refused(
            "COPY ... TO",
            "this service writes no files; fetch the result instead",
        )),
        Statement::Reset(_) => Err(SqlError::refused(
            "RESET",
            "session settings are fixed by the server",
        )),
    }
}

/// The leading keywords of a statement (`CREATE TABLE`, `INSERT`, `SET`),
/// for a refusal that names what was refused.
fn statement_name(statement: &ast::Statement) -> String {
    let text = statement.to_string();
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    match words.as_slice() {
        [first, second] if matches!(*first, "CREATE" | "DROP" | "ALTER" | "SHOW") => {
            format!("{first} {second}")
        }
        [first, ..] => first.to_string(),
        [] => "statement".to_string(),
    }
}

/// A result stream that stops with an error at the row cap or the deadline.
pub struct BoundedStream {
    inner: SendableRecordBatchStream,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    max_rows: usize,
    memory_bytes: usize,
    rows: usize,
    done: bool,
}

impl fmt::Debug for BoundedStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedStream")
            .field("timeout", &self.timeout)
            .field("max_rows", &self.max_rows)
            .field("rows", &self.rows)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl BoundedStream {
    fn new(inner: SendableRecordBatchStream, limits: &SqlLimits, deadline: Instant) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout: limits.timeout,
            max_rows: limits.max_rows,
            memory_bytes: limits.memory_bytes,
            rows: 0,
            done: false,
        }
    }

    pub fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn check(
        &mut self,
        item: Option<datafusion::error::Result<RecordBatch>>,
    ) -> Option<Result<RecordBatch, SqlError>> {
        let result = match item? {
            Err(e) => Err(SqlError::from_datafusion(e, self.memory_bytes)),
            Ok(batch) => {
                self.rows += batch.num_rows();
                if self.rows > self.max_rows {
                    Err(SqlError::ResourceExhausted {
                        limit: format!("row cap of {} rows", self.max_rows),
                    })
                } else {
                    Ok(batch)
                }
            }
        };
        self.done = result.is_err();
        Some(result)
    }
}

impl Stream for BoundedStream {
    type Item = Result<RecordBatch, SqlError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            let limit = self.timeout;
            return Poll::Ready(Some(Err(SqlError::Timeout { limit })));
        }
        let item = futures::ready!(self.inner.poll_next_unpin(cx));
        Poll::Ready(self.check(item))
    }
}
