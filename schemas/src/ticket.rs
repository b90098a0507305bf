//! Tickets: JSON a user can read and write by hand, holding everything a
//! server needs to serve one partition (docs/protocol.md).

use serde::{Deserialize, Serialize};

use crate::json::{decode, encode};
use crate::{RequestError, StreamRequest};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTicket {
    pub request: StreamRequest,
    pub partition: u32,
    /// The dataset version the request was planned on.
    pub dataset_version: String,
    /// `tokens` only: the content hash of the vocabulary the request was
    /// planned with, so that a server holding another table refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary_hash: Option<String>,
    /// The first batch to send: resume after batch k with k + 1.
    #[serde(default)]
    pub start_batch: u64,
}

impl StreamTicket {
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        let mut ticket: Self = decode("ticket", bytes)?;
        ticket.request = ticket.request.normalised()?;
        if ticket.request.tokenizer.is_some() != ticket.vocabulary_hash.is_some() {
            return Err(RequestError::Inconsistent(
                "invalid ticket: vocabulary_hash goes with a tokenizer, and a tokenizer needs it"
                    .into(),
            ));
        }
        if ticket.partition >= ticket.request.partitions {
            return Err(RequestError::Inconsistent(format!(
                "invalid ticket: partition {} of a request with {} partitions",
                ticket.partition, ticket.request.partitions
            )));
        }
        Ok(ticket)
    }

    pub fn to_json(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(partition: u32, partitions: u32) -> StreamTicket {
        StreamTicket {
            request: StreamRequest {
                partitions,
                ..StreamRequest::default()
            },
            partition,
            dataset_version: "v1".into(),
            vocabulary_hash: None,
            start_batch: 3,
        }
    }

    #[test]
    fn a_ticket_round_trips() {
        let t = ticket(1, 2);
        assert_eq!(StreamTicket::from_json(t.to_json().as_bytes()).unwrap(), t);
    }

    #[test]
    fn a_partition_beyond_the_request_and_garbage_are_refused() {
        let error = StreamTicket::from_json(ticket(2, 2).to_json().as_bytes()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid ticket: partition 2 of a request with 2 partitions"
        );
        let error = StreamTicket::from_json(b"{\"partition\": -1}").unwrap_err();
        assert!(error.to_string().starts_with("invalid ticket"), "{error}");
    }

    #[test]
    fn a_tokens_ticket_carries_its_vocabulary_hash_and_only_it_does() {
        let request = StreamRequest::from_json(
            br#"{"format": "tokens", "tokenizer": {"kind": "geneformer", "vocabulary": "gf"}}"#,
        )
        .unwrap();
        let mut tokens = StreamTicket {
            request,
            vocabulary_hash: Some("ab".into()),
            ..ticket(0, 1)
        };
        let json = tokens.to_json();
        assert!(json.contains(r#""vocabulary_hash":"ab""#), "{json}");
        assert_eq!(StreamTicket::from_json(json.as_bytes()).unwrap(), tokens);
        tokens.vocabulary_hash = None;
        let error = StreamTicket::from_json(tokens.to_json().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("vocabulary_hash"), "{error}");
        let plain = StreamTicket {
            vocabulary_hash: Some("ab".into()),
            ..ticket(0, 1)
        };
        assert!(StreamTicket::from_json(plain.to_json().as_bytes()).is_err());
    }
}
