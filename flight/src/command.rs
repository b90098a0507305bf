//! A descriptor's command or a ticket, decoded once into what it asks for
//! (arrow-rs' `FlightSqlService` way: decode, `match`, fall back). JSON
//! objects are this server's own protocol (docs/protocol.md); a protobuf
//! `Any` of a Flight SQL type goes to Flight SQL; anything else is refused
//! here, rather than reported as a protobuf decoding failure.

use arrow_flight::sql::Any;
use cellflight_schemas::{RequestError, SqlRequest, StreamRequest, StreamTicket};
use prost::Message;

use crate::error::ServiceError;

/// What a descriptor (`T` = [`StreamRequest`]) or a ticket (`T` =
/// [`StreamTicket`]) asks for.
#[derive(Debug)]
pub(crate) enum Command<T> {
    /// A Flight SQL message, served by the Flight SQL front end.
    FlightSql,
    /// `{"sql": "SELECT ..."}`, for plain `pyarrow.flight` users.
    Sql(SqlRequest),
    /// The training stream: a request to plan, or a partition to serve.
    Stream(T),
}

impl Command<StreamRequest> {
    pub(crate) fn of_descriptor(cmd: &[u8]) -> Result<Self, ServiceError> {
        decode(cmd, "request", StreamRequest::from_json)
    }
}

impl Command<StreamTicket> {
    pub(crate) fn of_ticket(ticket: &[u8]) -> Result<Self, ServiceError> {
        decode(ticket, "ticket", StreamTicket::from_json)
    }
}

const FLIGHT_SQL_TYPE_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

fn decode<T>(
    bytes: &[u8],
    what: &str,
    stream: impl FnOnce(&[u8]) -> Result<T, RequestError>,
) -> Result<Command<T>, ServiceError> {
    // JSON starts with `{` after any whitespace.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        if SqlRequest::is_sql(bytes) {
            return Ok(Command::Sql(SqlRequest::from_json(bytes)?));
        }
        return Ok(Command::Stream(stream(bytes)?));
    }
    match Any::decode(bytes) {
        Ok(any) if any.type_url.starts_with(FLIGHT_SQL_TYPE_PREFIX) => Ok(Command::FlightSql),
        _ => Err(ServiceError::InvalidArgument(format!(
            "invalid {what}: neither a JSON object (docs/protocol.md) nor a Flight SQL command"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};

    use super::*;

    #[test]
    fn each_kind_of_descriptor_decodes_to_its_command() {
        let stream = Command::of_descriptor(br#" {"batch_size": 32}"#).unwrap();
        assert!(matches!(stream, Command::Stream(r) if r.batch_size == 32));
        let sql = Command::of_descriptor(br#"{"sql": "SELECT 1"}"#).unwrap();
        assert!(matches!(sql, Command::Sql(s) if s.sql == "SELECT 1"));
        let query = CommandStatementQuery {
            query: "SELECT 1".into(),
            transaction_id: None,
        };
        let flight_sql = Command::of_descriptor(&query.as_any().encode_to_vec()).unwrap();
        assert!(matches!(flight_sql, Command::FlightSql));
    }

    #[test]
    fn anything_else_is_refused_saying_what_was_expected() {
        for garbage in [&b"\xff\xfe"[..], b"SELECT 1", b""] {
            let error = Command::of_ticket(garbage).unwrap_err();
            assert_eq!(
                error.to_string(),
                "invalid ticket: neither a JSON object (docs/protocol.md) nor a Flight SQL command"
            );
        }
        let error = Command::of_descriptor(br#"{"batch_size": "many"}"#).unwrap_err();
        assert!(error.to_string().starts_with("invalid request"), "{error}");
    }
}
