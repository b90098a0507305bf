//! Ad hoc SQL for plain `pyarrow.flight` users: the JSON descriptor
//! `{"sql": "SELECT ..."}`, answered with one endpoint whose ticket is that
//! same JSON (docs/protocol.md).

use serde::{Deserialize, Serialize};

use crate::json::{decode, encode};
use crate::RequestError;

/// A SQL query sent as JSON, as descriptor or ticket. Unknown keys are
/// refused: a misspelt option must not be silently dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
}

impl SqlRequest {
    /// Whether a JSON descriptor or ticket asks for SQL (has the key `sql`)
    /// rather than the training stream.
    pub fn is_sql(json: &[u8]) -> bool {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(json)
            .is_ok_and(|object| object.contains_key("sql"))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        decode("SQL request", bytes)
    }

    pub fn to_json(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StreamRequest, StreamTicket};

    fn request() -> SqlRequest {
        SqlRequest {
            sql: "SELECT plate, count(*) FROM demo.cells GROUP BY plate".into(),
        }
    }

    #[test]
    fn a_sql_request_round_trips_with_the_key_python_sends() {
        let json = request().to_json();
        assert_eq!(
            json,
            r#"{"sql":"SELECT plate, count(*) FROM demo.cells GROUP BY plate"}"#
        );
        assert_eq!(SqlRequest::from_json(json.as_bytes()).unwrap(), request());
    }

    #[test]
    fn is_sql_tells_sql_from_a_stream_request() {
        assert!(SqlRequest::is_sql(request().to_json().as_bytes()));
        assert!(!SqlRequest::is_sql(
            StreamRequest::default().to_json().as_bytes()
        ));
        let ticket = StreamTicket {
            request: StreamRequest::default(),
            partition: 0,
            dataset_version: "v1".into(),
            vocabulary_hash: None,
            start_batch: 0,
        };
        assert!(!SqlRequest::is_sql(ticket.to_json().as_bytes()));
        assert!(!SqlRequest::is_sql(b"SELECT 1"));
        assert!(!SqlRequest::is_sql(b"[\"sql\"]"));
    }

    #[test]
    fn a_sql_request_with_another_key_or_no_text_is_refused() {
        let error = SqlRequest::from_json(br#"{"sql":"SELECT 1","limit":5}"#).unwrap_err();
        let error = error.to_string();
        assert!(error.starts_with("invalid SQL request: "), "{error}");
        assert!(error.contains("`limit`"), "{error}");
        let error = SqlRequest::from_json(br#"{"sql":1}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("invalid SQL request: sql: "), "{error}");
    }
}
