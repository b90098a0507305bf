//! Statement handles: the SQL text and its bound parameters, carried by the
//! client. The server keeps no per-statement state, so any server serves any
//! handle, and a restart or a client that never closes leaks nothing.
//!
//! Encoding: a protobuf message (field 1: the SQL, UTF-8; field 2: the
//! parameters as an Arrow IPC stream of one row, or empty when none are
//! bound).

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use bytes::Bytes;
use cellflight_sql::ScalarValue;
use prost::Message;

use crate::error::ServiceError;

#[derive(Clone, PartialEq, Message)]
struct HandleMessage {
    #[prost(string, tag = "1")]
    sql: String,
    #[prost(bytes = "vec", tag = "2")]
    parameters: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct StatementHandle {
    pub(super) sql: String,
    /// One row: column i binds placeholder `$i+1` (or the i-th `?`).
    pub parameters: Option<RecordBatch>,
}

impl StatementHandle {
    pub(super) fn new(sql: String) -> Self {
        Self {
            sql,
            parameters: None,
        }
    }

    /// This statement with `parameters` bound: one row, column i for
    /// placeholder i+1 (a batch of no rows has no value to bind).
    pub(super) fn with_parameters(self, parameters: RecordBatch) -> Result<Self, ServiceError> {
        if parameters.num_rows() != 1 {
            return Err(ServiceError::InvalidArgument(format!(
                "bind exactly one row of parameters, got {} rows",
                parameters.num_rows()
            )));
        }
        Ok(Self {
            parameters: Some(parameters),
            ..self
        })
    }

    /// The bound values, in placeholder order (none if unbound).
    pub(super) fn parameter_values(&self) -> Result<Vec<ScalarValue>, ServiceError> {
        let Some(batch) = &self.parameters else {
            return Ok(Vec::new());
        };
        batch
            .columns()
            .iter()
            .map(|column| {
                ScalarValue::try_from_array(column, 0).map_err(|e| {
                    ServiceError::InvalidArgument(format!("unsupported parameter value: {e}"))
                })
            })
            .collect()
    }

    pub(super) fn encode(&self) -> Result<Bytes, ServiceError> {
        let parameters = match &self.parameters {
            Some(batch) => {
                let mut writer = StreamWriter::try_new(Vec::new(), &batch.schema())?;
                writer.write(batch)?;
                writer.into_inner()?
            }
            None => Vec::new(),
        };
        let message = HandleMessage {
            sql: self.sql.clone(),
            parameters,
        };
        Ok(message.encode_to_vec().into())
    }

    /// The handle `bytes` encode. Handles come back from clients, so a
    /// forged one is checked as [`Self::with_parameters`] checks a bound
    /// one: exactly one batch of one row.
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, ServiceError> {
        let invalid = |e: &dyn std::fmt::Display| {
            ServiceError::InvalidArgument(format!("invalid statement handle: {e}"))
        };
        let message = HandleMessage::decode(bytes).map_err(|e| invalid(&e))?;
        let handle = Self::new(message.sql);
        if message.parameters.is_empty() {
            return Ok(handle);
        }
        let mut reader =
            StreamReader::try_new(message.parameters.as_slice(), None).map_err(|e| invalid(&e))?;
        let batch = reader
            .next()
            .ok_or_else(|| invalid(&"no parameter batch"))?
            .map_err(|e| invalid(&e))?;
        if reader.next().is_some() {
            return Err(invalid(&"more than one parameter batch"));
        }
        handle.with_parameters(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn a_handle_round_trips_its_sql_and_parameters() {
        let parameters = RecordBatch::try_from_iter([
            ("0", Arc::new(StringArray::from(vec!["lung"])) as _),
            ("1", Arc::new(Int64Array::from(vec![500])) as _),
        ])
        .unwrap();
        let handle = StatementHandle::new("SELECT ? , ?".into())
            .with_parameters(parameters)
            .unwrap();
        let decoded = StatementHandle::decode(&handle.encode().unwrap()).unwrap();
        assert_eq!(decoded, handle);
        assert_eq!(
            decoded.parameter_values().unwrap(),
            [ScalarValue::from("lung"), ScalarValue::Int64(Some(500))]
        );
    }

    #[test]
    fn parameters_bind_one_row_and_garbage_is_not_a_handle() {
        let two_rows =
            RecordBatch::try_from_iter([("0", Arc::new(Int64Array::from(vec![1, 2])) as _)])
                .unwrap();
        let err = StatementHandle::new("SELECT ?".into())
            .with_parameters(two_rows)
            .unwrap_err();
        assert!(err.to_string().contains("got 2 rows"), "{err}");
        let err = StatementHandle::decode(b"\xff\xff\xff").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid statement handle"),
            "{err}"
        );
    }

    /// A handle as a client could forge it: any SQL, any parameter batches.
    fn forged(batches: &[RecordBatch]) -> Vec<u8> {
        let mut writer = StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
        for batch in batches {
            writer.write(batch).unwrap();
        }
        let message = HandleMessage {
            sql: "SELECT $1".into(),
            parameters: writer.into_inner().unwrap(),
        };
        message.encode_to_vec()
    }

    #[test]
    fn a_forged_handle_binds_one_batch_of_one_row_or_is_invalid() {
        let rows = |values: Vec<i64>| {
            RecordBatch::try_from_iter([("0", Arc::new(Int64Array::from(values)) as _)]).unwrap()
        };
        for (batches, expected) in [
            (vec![rows(vec![])], "got 0 rows"),
            (vec![rows(vec![1, 2, 3])], "got 3 rows"),
            (
                vec![rows(vec![1]), rows(vec![2])],
                "more than one parameter batch",
            ),
        ] {
            let err = StatementHandle::decode(&forged(&batches)).unwrap_err();
            assert!(
                matches!(&err, ServiceError::InvalidArgument(m) if m.contains(expected)),
                "{err:?} lacks {expected:?}"
            );
        }
        let handle = StatementHandle::decode(&forged(&[rows(vec![7])])).unwrap();
        assert_eq!(
            handle.parameter_values().unwrap(),
            [ScalarValue::Int64(Some(7))]
        );
    }
}
