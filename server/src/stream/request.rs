//! The request a trainer sends: every key of docs/protocol.md, defaults
//! filled, unknown keys refused.

use cellflight_sampler::{Mode, SamplerConfig};
use serde::{Deserialize, Serialize};

use crate::error::ServiceError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    #[serde(default)]
    pub dataset: Option<String>,
    #[serde(default = "defaults::batch_size")]
    pub batch_size: u32,
    #[serde(default = "defaults::block_size")]
    pub block_size: u32,
    #[serde(default = "defaults::fetch_factor")]
    pub fetch_factor: u32,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub epoch: u64,
    #[serde(default = "defaults::partitions")]
    pub partitions: u32,
    #[serde(default)]
    pub drop_last: bool,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub format: Format,
    /// Keys of the protocol this server does not serve yet: present, they
    /// are refused by name rather than silently ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obs_columns: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genes: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gene_column: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genes_query: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    #[default]
    BlockShuffle,
    Sequential,
    Weighted,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Csr,
    Dense,
}

mod defaults {
    pub fn batch_size() -> u32 {
        64
    }
    pub fn block_size() -> u32 {
        16
    }
    pub fn fetch_factor() -> u32 {
        64
    }
    pub fn partitions() -> u32 {
        1
    }
}

impl StreamRequest {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ServiceError> {
        let request: Self = serde_json::from_slice(bytes)
            .map_err(|e| ServiceError::InvalidArgument(format!("invalid request: {e}")))?;
        request.refuse_unserved()?;
        Ok(request)
    }

    /// Refuses the keys this server does not serve yet (tickets are
    /// checked too: a hand-made one could carry them).
    pub fn refuse_unserved(&self) -> Result<(), ServiceError> {
        let unserved = [
            ("query", self.query.is_some()),
            ("obs_columns", self.obs_columns.is_some()),
            ("genes", self.genes.is_some()),
            ("gene_column", self.gene_column.is_some()),
            ("genes_query", self.genes_query.is_some()),
            ("transform", self.transform.is_some()),
            ("format: dense", self.format == Format::Dense),
            ("sampling: weighted", self.sampling == Sampling::Weighted),
        ];
        match unserved.iter().find(|(_, present)| *present) {
            Some((key, _)) => Err(ServiceError::Unimplemented(format!(
                "{key} is not served by this version of cellflight yet"
            ))),
            None => Ok(()),
        }
    }

    pub fn sampler_config(&self) -> SamplerConfig {
        SamplerConfig {
            batch_size: self.batch_size,
            block_size: self.block_size,
            fetch_factor: self.fetch_factor,
            seed: self.seed,
            epoch: self.epoch,
            partitions: self.partitions,
            drop_last: self.drop_last,
            mode: match self.sampling {
                Sampling::Sequential => Mode::Sequential,
                _ => Mode::BlockShuffle,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_request_takes_every_default() {
        let request = StreamRequest::from_json(b"{}").unwrap();
        assert_eq!(
            (
                request.batch_size,
                request.block_size,
                request.fetch_factor,
                request.partitions
            ),
            (64, 16, 64, 1)
        );
        assert_eq!(
            (request.seed, request.epoch, request.drop_last),
            (0, 0, false)
        );
        assert_eq!(request.sampling, Sampling::BlockShuffle);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let err = StreamRequest::from_json(br#"{"batchsize": 3}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `batchsize`"),
            "{err}"
        );
        let err = StreamRequest::from_json(br#"{"batch_size": -1}"#).unwrap_err();
        assert!(
            err.to_string().contains("invalid value: integer `-1`"),
            "{err}"
        );
        let err = StreamRequest::from_json(b"not json").unwrap_err();
        assert!(err.to_string().starts_with("invalid request"), "{err}");
    }

    #[test]
    fn keys_not_served_yet_are_refused_not_ignored() {
        let err = StreamRequest::from_json(br#"{"query": "plate = 'p1'"}"#).unwrap_err();
        assert!(matches!(err, ServiceError::Unimplemented(_)));
        assert!(err.to_string().contains("query"), "{err}");
    }
}
