//! Ad hoc SQL for plain `pyarrow.flight` users: the JSON descriptor
//! `{"sql": "SELECT ..."}`, answered with one endpoint whose ticket is that
//! same JSON (docs/protocol.md).

use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    pub fn from_json(json: &[u8]) -> Result<Self, ServiceError> {
        serde_json::from_slice(json)
            .map_err(|e| ServiceError::InvalidArgument(format!("invalid SQL request: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a SQL request always serialises")
    }
}
