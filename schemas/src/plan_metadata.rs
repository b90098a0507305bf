//! The `app_metadata` a server attaches to a training stream: the plan's,
//! on the `FlightInfo` of `GetFlightInfo`, and each minibatch's position, on
//! its `DoGet` message (docs/protocol.md). Python clients read the same keys.

use serde::{Deserialize, Serialize};

use crate::json::{decode, encode};
use crate::{RequestError, TokenizerSpec};

/// The `app_metadata` of a training-stream plan. Unknown keys are ignored,
/// not refused: a newer server may add keys an older client never reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMetadata {
    /// Cells the request's query selected, before sampling and padding.
    pub cohort_size: u64,
    pub batches_per_partition: u64,
    pub seed: u64,
    /// The dataset version the plan (and each of its tickets) was made on.
    pub dataset_version: String,
    /// `tokens` only: how the cells are tokenized, with the vocabulary's hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<TokenizerSpec>,
}

impl PlanMetadata {
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        decode("plan metadata", bytes)
    }

    pub fn to_json(&self) -> String {
        encode(self)
    }
}

/// The `app_metadata` of one minibatch: where it sits in its partition's
/// stream, so a reader can resume after it with `start_batch = batch + 1`.
/// Unknown keys are ignored, as for [`PlanMetadata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchPosition {
    pub partition: u32,
    pub batch: u64,
}

impl BatchPosition {
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        decode("minibatch position", bytes)
    }

    pub fn to_json(&self) -> String {
        encode(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> PlanMetadata {
        PlanMetadata {
            cohort_size: 200,
            batches_per_partition: 4,
            seed: 7,
            dataset_version: "v1".into(),
            tokenizer: None,
        }
    }

    #[test]
    fn a_plan_metadata_round_trips_with_the_keys_python_reads() {
        let json = plan().to_json();
        assert_eq!(
            json,
            r#"{"cohort_size":200,"batches_per_partition":4,"seed":7,"dataset_version":"v1"}"#
        );
        assert_eq!(PlanMetadata::from_json(json.as_bytes()).unwrap(), plan());
    }

    #[test]
    fn a_tokens_plan_metadata_holds_the_tokenizer_flat_with_its_vocabulary_hash() {
        let request = crate::StreamRequest::from_json(
            br#"{"format": "tokens", "tokenizer": {"kind": "geneformer", "vocabulary": "gf"}}"#,
        )
        .unwrap();
        let tokens = PlanMetadata {
            tokenizer: request.tokenizer.map(|t| t.spec("ab")),
            ..plan()
        };
        let json = tokens.to_json();
        assert!(
            json.ends_with(r#""tokenizer":{"kind":"geneformer","vocabulary":"gf","max_length":2048,"cls":false,"eos":false,"padding":"max_length","vocabulary_hash":"ab"}}"#),
            "{json}"
        );
        assert_eq!(PlanMetadata::from_json(json.as_bytes()).unwrap(), tokens);
    }

    #[test]
    fn unknown_keys_of_a_newer_server_are_ignored() {
        let json = br#"{"cohort_size":200,"batches_per_partition":4,"seed":7,
            "dataset_version":"v1","shards":3}"#;
        assert_eq!(PlanMetadata::from_json(json).unwrap(), plan());
        let position = BatchPosition::from_json(br#"{"partition":1,"batch":2,"rows":64}"#);
        assert_eq!(
            position.unwrap(),
            BatchPosition {
                partition: 1,
                batch: 2
            }
        );
    }

    #[test]
    fn a_plan_metadata_with_a_count_of_the_wrong_type_is_refused_naming_the_key() {
        let json =
            br#"{"cohort_size":-1,"batches_per_partition":4,"seed":7,"dataset_version":"v1"}"#;
        let error = PlanMetadata::from_json(json).unwrap_err().to_string();
        assert!(
            error.starts_with("invalid plan metadata: cohort_size: "),
            "{error}"
        );
    }

    #[test]
    fn a_minibatch_position_round_trips_with_the_keys_python_reads() {
        let position = BatchPosition {
            partition: 1,
            batch: 9,
        };
        assert_eq!(position.to_json(), r#"{"partition":1,"batch":9}"#);
        assert_eq!(
            BatchPosition::from_json(position.to_json().as_bytes()).unwrap(),
            position
        );
    }

    #[test]
    fn a_minibatch_position_missing_batch_is_refused_naming_the_key() {
        let error = BatchPosition::from_json(br#"{"partition":0}"#)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("invalid minibatch position"), "{error}");
        assert!(error.contains("`batch`"), "{error}");
    }

    #[test]
    fn a_partition_beyond_u32_is_refused() {
        let error = BatchPosition::from_json(br#"{"partition":4294967296,"batch":0}"#)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("invalid minibatch position: partition: "),
            "{error}"
        );
    }
}
