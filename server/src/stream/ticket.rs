//! Tickets: JSON a user can read and write by hand, holding everything a
//! server needs to serve one partition.

use serde::{Deserialize, Serialize};

use super::StreamRequest;
use crate::error::ServiceError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTicket {
    pub request: StreamRequest,
    pub partition: u32,
    pub dataset_version: String,
    #[serde(default)]
    pub start_batch: u64,
}

impl StreamTicket {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ServiceError> {
        let ticket: Self = serde_json::from_slice(bytes)
            .map_err(|e| ServiceError::InvalidArgument(format!("invalid ticket: {e}")))?;
        ticket.request.refuse_unserved()?;
        if ticket.partition >= ticket.request.partitions {
            return Err(ServiceError::InvalidArgument(format!(
                "invalid ticket: partition {} of a request with {} partitions",
                ticket.partition, ticket.request.partitions
            )));
        }
        Ok(ticket)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ticket always serialises")
    }
}
