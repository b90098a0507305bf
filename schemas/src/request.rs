//! The training-stream request (docs/protocol.md): every key typed, defaults
//! filled, unknown keys and inconsistent combinations refused by name.

use serde::{Deserialize, Serialize};

use crate::json::{decode, encode};
use crate::tokenizer::{Tokenizer, TokenizerKind, ATTENTION_MASK_COLUMN, INPUT_IDS_COLUMN};
use crate::RequestError;

/// Names of the columns every minibatch may carry besides obs columns.
pub const CELL_ID_COLUMN: &str = "cell_id";
pub const X_COLUMN: &str = "x";
pub const IS_PADDING_COLUMN: &str = "is_padding";

/// The upper bound of each request key (docs/protocol.md). They are checked
/// when a request is read, before anything is sized by its values: a
/// shared server must not let one request ask for billions of endpoints.
pub mod bounds {
    /// Cells per minibatch.
    pub const BATCH_SIZE: u32 = 1 << 16;
    /// Consecutive cohort cells read together.
    pub const BLOCK_SIZE: u32 = 1 << 20;
    /// Minibatches per fetch.
    pub const FETCH_FACTOR: u32 = 1 << 12;
    /// Cells of one fetch (`batch_size × fetch_factor`): the sampler holds
    /// a few words a cell of each fetch, and the engine its rows.
    pub const FETCH_CELLS: u64 = 1 << 22;
    /// Endpoints of a plan (DDP ranks × loader workers).
    pub const PARTITIONS: u32 = 1 << 16;
    /// Draws of a weighted epoch.
    pub const NUM_SAMPLES: u64 = 1 << 31;
    /// Names in `genes` (Tahoe-100M has 62,710 genes).
    pub const GENES: usize = 1 << 20;
    /// Names in `obs_columns`.
    pub const OBS_COLUMNS: usize = 1 << 10;
    /// Bytes of SQL text (`query`, `genes_query`, `weights`, and SQL
    /// statements): room for `cell_id IN (…)` with 100,000 ids and more.
    pub const SQL_BYTES: usize = 4 << 20;
}

/// The JSON command of `GetFlightInfo` for a training stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRequest {
    /// The dataset; `None` is the server's default dataset.
    #[serde(default)]
    pub dataset: Option<String>,
    /// A SQL predicate over `cells`, or a full `SELECT cell_id ...`; `None`
    /// is every cell.
    #[serde(default)]
    pub query: Option<String>,
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
    /// Weighted sampling: a numeric SQL expression over `cells`.
    #[serde(default)]
    pub weights: Option<String>,
    /// Weighted sampling: a `cells` column whose values are drawn equally often.
    #[serde(default)]
    pub balance_by: Option<String>,
    /// Weighted sampling: draws in the epoch; `None` is the cohort size.
    #[serde(default)]
    pub num_samples: Option<u64>,
    /// Columns of `cells` attached to each minibatch, in this order.
    #[serde(default)]
    pub obs_columns: Vec<String>,
    /// The output gene space: values of `gene_column`, in this order.
    #[serde(default)]
    pub genes: Option<Vec<String>>,
    /// The `genes` column that `genes` names (default `gene_id`).
    #[serde(default)]
    pub gene_column: Option<String>,
    /// The output gene space: a SQL predicate over `genes`.
    #[serde(default)]
    pub genes_query: Option<String>,
    #[serde(default)]
    pub format: Format,
    #[serde(default)]
    pub transform: Option<Transform>,
    /// `tokens` only: which tokens, from which vocabulary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<Tokenizer>,
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
    /// Each cell's tokens, as `tokenizer` says.
    Tokens,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Csr => "csr",
            Self::Dense => "dense",
            Self::Tokens => "tokens",
        }
    }
}

/// Per-cell value transforms, applied in this order: scale the cell to
/// `normalize_total` (its total taken over all genes), then `ln(1 + v)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    #[serde(default)]
    pub normalize_total: Option<f64>,
    #[serde(default)]
    pub log1p: bool,
}

mod defaults {
    pub(super) fn batch_size() -> u32 {
        64
    }
    pub(super) fn block_size() -> u32 {
        16
    }
    pub(super) fn fetch_factor() -> u32 {
        64
    }
    pub(super) fn partitions() -> u32 {
        1
    }
}

impl Default for StreamRequest {
    fn default() -> Self {
        #[allow(clippy::expect_used, reason = "every key has a valid default")]
        Self::from_json(b"{}").expect("the empty request is valid")
    }
}

impl StreamRequest {
    /// Parses and checks a request.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        decode::<Self>("request", bytes)?.normalised()
    }

    /// The request checked, with the defaults that depend on other keys
    /// filled (the tokenizer's), as a ticket holds it.
    pub fn normalised(mut self) -> Result<Self, RequestError> {
        self.tokenizer = self.tokenizer.map(Tokenizer::normalised).transpose()?;
        self.validate()?;
        Ok(self)
    }

    /// The request as JSON, every key present (defaults filled).
    pub fn to_json(&self) -> String {
        encode(self)
    }

    /// Checks what the types alone do not: keys that go together, keys that
    /// exclude each other, names that would clash in the output.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.validate_bounds()?;
        self.validate_sampling()?;
        self.validate_genes()?;
        self.validate_obs_columns()?;
        self.validate_tokenizer()?;
        if let Some(transform) = &self.transform {
            transform.validate()?;
        }
        Ok(())
    }

    /// Every key within [`bounds`]; the error names the key, its bound and
    /// the value sent.
    fn validate_bounds(&self) -> Result<(), RequestError> {
        let text_len = |text: &Option<String>| text.as_ref().map_or(0, String::len) as u64;
        let keys = [
            (
                "batch_size",
                u64::from(self.batch_size),
                u64::from(bounds::BATCH_SIZE),
            ),
            (
                "block_size",
                u64::from(self.block_size),
                u64::from(bounds::BLOCK_SIZE),
            ),
            (
                "fetch_factor",
                u64::from(self.fetch_factor),
                u64::from(bounds::FETCH_FACTOR),
            ),
            (
                "batch_size × fetch_factor",
                u64::from(self.batch_size) * u64::from(self.fetch_factor),
                bounds::FETCH_CELLS,
            ),
            (
                "partitions",
                u64::from(self.partitions),
                u64::from(bounds::PARTITIONS),
            ),
            (
                "num_samples",
                self.num_samples.unwrap_or(0),
                bounds::NUM_SAMPLES,
            ),
            (
                "genes (names)",
                self.genes.as_ref().map_or(0, Vec::len) as u64,
                bounds::GENES as u64,
            ),
            (
                "obs_columns (names)",
                self.obs_columns.len() as u64,
                bounds::OBS_COLUMNS as u64,
            ),
            (
                "query (bytes)",
                text_len(&self.query),
                bounds::SQL_BYTES as u64,
            ),
            (
                "genes_query (bytes)",
                text_len(&self.genes_query),
                bounds::SQL_BYTES as u64,
            ),
            (
                "weights (bytes)",
                text_len(&self.weights),
                bounds::SQL_BYTES as u64,
            ),
        ];
        match keys.into_iter().find(|&(_, value, max)| value > max) {
            Some((key, value, max)) => Err(RequestError::Inconsistent(format!(
                "{key} must be at most {max}, got {value}"
            ))),
            None => Ok(()),
        }
    }

    fn validate_sampling(&self) -> Result<(), RequestError> {
        let weighted = self.sampling == Sampling::Weighted;
        let keys = [
            ("weights", self.weights.is_some()),
            ("balance_by", self.balance_by.is_some()),
            ("num_samples", self.num_samples.is_some()),
        ];
        if !weighted {
            if let Some((key, _)) = keys.iter().find(|(_, given)| *given) {
                return Err(RequestError::Inconsistent(format!(
                    "{key} is only for \"sampling\": \"weighted\""
                )));
            }
            return Ok(());
        }
        match (&self.weights, &self.balance_by) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(RequestError::Inconsistent(
                "weighted sampling takes exactly one of weights (a SQL expression) and balance_by (a column)".into(),
            )),
        }
    }

    fn validate_genes(&self) -> Result<(), RequestError> {
        if self.genes.is_some() && self.genes_query.is_some() {
            return Err(RequestError::Inconsistent(
                "give genes or genes_query, not both".into(),
            ));
        }
        if self.gene_column.is_some() && self.genes.is_none() && self.format != Format::Tokens {
            return Err(RequestError::Inconsistent(
                "gene_column names the genes column that genes lists (or that a vocabulary keys); give genes too".into(),
            ));
        }
        Ok(())
    }

    /// `tokenizer` exactly with `"format": "tokens"`; Geneformer has its
    /// own normalisation, so no `transform`.
    fn validate_tokenizer(&self) -> Result<(), RequestError> {
        let refuse = |message: &str| Err(RequestError::Inconsistent(message.into()));
        match (&self.tokenizer, self.format) {
            (None, Format::Tokens) => {
                refuse("\"format\": \"tokens\" needs a tokenizer object (kind, vocabulary, ...)")
            }
            (Some(_), Format::Csr | Format::Dense) => {
                refuse("tokenizer is only for \"format\": \"tokens\"")
            }
            (Some(tokenizer), _)
                if tokenizer.kind == TokenizerKind::Geneformer && self.transform.is_some() =>
            {
                refuse("transform does not go with the geneformer tokenizer, which normalises by its own rule")
            }
            _ => Ok(()),
        }
    }

    fn validate_obs_columns(&self) -> Result<(), RequestError> {
        let mut seen = std::collections::HashSet::new();
        for column in &self.obs_columns {
            if !seen.insert(column.as_str()) {
                return Err(RequestError::Inconsistent(format!(
                    "obs_columns names {column:?} twice"
                )));
            }
            if RESERVED_COLUMNS.contains(&column.as_str()) {
                return Err(RequestError::Inconsistent(format!(
                    "obs_columns cannot hold {column:?}: minibatches have a column of that name"
                )));
            }
        }
        Ok(())
    }
}

/// Names that minibatch columns have (in one format or the other), so no
/// obs column may take them.
pub const RESERVED_COLUMNS: [&str; 7] = [
    CELL_ID_COLUMN,
    crate::INDICES_COLUMN,
    crate::VALUES_COLUMN,
    X_COLUMN,
    IS_PADDING_COLUMN,
    INPUT_IDS_COLUMN,
    ATTENTION_MASK_COLUMN,
];

impl Transform {
    fn validate(&self) -> Result<(), RequestError> {
        if let Some(total) = self.normalize_total {
            if !(total.is_finite() && total > 0.0) {
                return Err(RequestError::Inconsistent(format!(
                    "transform.normalize_total must be a positive number, got {total}"
                )));
            }
        }
        if self.normalize_total.is_none() && !self.log1p {
            return Err(RequestError::Inconsistent(
                "transform asks for nothing: give normalize_total, log1p or both".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(json: &str) -> String {
        StreamRequest::from_json(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn every_key_is_refused_past_its_bound_naming_it_the_bound_and_the_value() {
        let long = |bytes: usize| format!("{:?}", "x".repeat(bytes - 2));
        let names = |count: usize| format!("[{}]", vec!["\"g\""; count].join(","));
        let over = [
            (
                "batch_size",
                format!(r#"{{"batch_size": {}}}"#, bounds::BATCH_SIZE + 1),
            ),
            (
                "block_size",
                format!(r#"{{"block_size": {}}}"#, bounds::BLOCK_SIZE + 1),
            ),
            (
                "fetch_factor",
                format!(r#"{{"fetch_factor": {}}}"#, bounds::FETCH_FACTOR + 1),
            ),
            (
                "batch_size × fetch_factor",
                format!(
                    r#"{{"batch_size": {}, "fetch_factor": {}}}"#,
                    bounds::BATCH_SIZE,
                    128
                ),
            ),
            ("partitions", format!(r#"{{"partitions": {}}}"#, u32::MAX)),
            (
                "num_samples",
                format!(
                    r#"{{"sampling": "weighted", "balance_by": "plate", "num_samples": {}}}"#,
                    u32::MAX
                ),
            ),
            (
                "genes (names)",
                format!(r#"{{"genes": {}}}"#, names(bounds::GENES + 1)),
            ),
            (
                "obs_columns (names)",
                format!(r#"{{"obs_columns": {}}}"#, names(bounds::OBS_COLUMNS + 1)),
            ),
            (
                "query (bytes)",
                format!(r#"{{"query": {}}}"#, long(bounds::SQL_BYTES + 3)),
            ),
            (
                "genes_query (bytes)",
                format!(r#"{{"genes_query": {}}}"#, long(bounds::SQL_BYTES + 3)),
            ),
            (
                "weights (bytes)",
                format!(
                    r#"{{"sampling": "weighted", "weights": {}}}"#,
                    long(bounds::SQL_BYTES + 3)
                ),
            ),
        ];
        for (key, json) in over {
            let message = refused(&json);
            assert!(
                message.starts_with(&format!("{key} must be at most ")),
                "{key}: {message}"
            );
        }
    }

    #[test]
    fn every_key_at_its_bound_is_accepted() {
        let json = format!(
            r#"{{"batch_size": {}, "block_size": {}, "fetch_factor": {}, "partitions": {}}}"#,
            bounds::BATCH_SIZE,
            bounds::BLOCK_SIZE,
            bounds::FETCH_CELLS / u64::from(bounds::BATCH_SIZE),
            bounds::PARTITIONS
        );
        assert!(StreamRequest::from_json(json.as_bytes()).is_ok());
        let widest = format!(
            r#"{{"batch_size": 1, "fetch_factor": {}}}"#,
            bounds::FETCH_FACTOR
        );
        assert!(StreamRequest::from_json(widest.as_bytes()).is_ok());
    }

    #[test]
    fn an_empty_request_takes_every_default() {
        let request = StreamRequest::default();
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
        assert_eq!(
            (request.sampling, request.format),
            (Sampling::BlockShuffle, Format::Csr)
        );
        assert!(request.obs_columns.is_empty() && request.query.is_none());
    }

    #[test]
    fn a_request_round_trips_with_its_defaults_filled() {
        let request = StreamRequest::from_json(
            br#"{"query": "plate = 'p1'", "obs_columns": ["plate"], "transform": {"log1p": true}}"#,
        )
        .unwrap();
        let json = request.to_json();
        assert!(json.contains(r#""batch_size":64"#), "{json}");
        assert_eq!(StreamRequest::from_json(json.as_bytes()).unwrap(), request);
    }

    #[test]
    fn a_tokens_request_keys_its_vocabulary_by_gene_column_and_round_trips_filled() {
        let request = StreamRequest::from_json(
            br#"{"format": "tokens", "gene_column": "symbol", "transform": {"log1p": true},
                 "tokenizer": {"kind": "scgpt", "vocabulary": "human"}}"#,
        )
        .unwrap();
        let json = request.to_json();
        assert!(json.contains(r#""n_bins":51"#), "{json}");
        assert_eq!(StreamRequest::from_json(json.as_bytes()).unwrap(), request);
        assert!(!StreamRequest::default().to_json().contains("tokenizer"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        assert!(refused(r#"{"batchsize": 3}"#).contains("unknown field `batchsize`"));
        assert!(refused(r#"{"batch_size": -1}"#).contains("invalid value: integer `-1`"));
        assert!(refused("not json").starts_with("invalid request"));
        assert!(refused(r#"{"transform": {"scale": 2}}"#).contains("unknown field `scale`"));
        assert!(refused(r#"{"format": "coo"}"#).contains("unknown variant `coo`"));
    }

    #[test]
    fn inconsistent_combinations_are_refused_with_the_reason() {
        let cases = [
            (r#"{"weights": "1.0"}"#, "weights is only for"),
            (r#"{"sampling": "weighted"}"#, "exactly one of weights"),
            (
                r#"{"sampling": "weighted", "weights": "1", "balance_by": "plate"}"#,
                "exactly one of weights",
            ),
            (r#"{"genes": ["A"], "genes_query": "true"}"#, "not both"),
            (r#"{"gene_column": "symbol"}"#, "give genes too"),
            (r#"{"format": "tokens"}"#, "needs a tokenizer object"),
            (
                r#"{"tokenizer": {"kind": "scgpt", "vocabulary": "v"}}"#,
                "only for \"format\": \"tokens\"",
            ),
            (
                r#"{"format": "tokens", "tokenizer": {"kind": "geneformer", "vocabulary": "v"}, "transform": {"log1p": true}}"#,
                "transform does not go with the geneformer tokenizer",
            ),
            (
                r#"{"format": "tokens", "tokenizer": {"kind": "scgpt", "vocabulary": "v", "max_length": 0}}"#,
                "tokenizer.max_length must leave room",
            ),
            (
                r#"{"obs_columns": ["input_ids"]}"#,
                "have a column of that name",
            ),
            (r#"{"obs_columns": ["plate", "plate"]}"#, "twice"),
            (
                r#"{"obs_columns": ["is_padding"]}"#,
                "have a column of that name",
            ),
            (r#"{"transform": {}}"#, "asks for nothing"),
            (
                r#"{"transform": {"normalize_total": 0}}"#,
                "positive number, got 0",
            ),
        ];
        for (json, words) in cases {
            let error = refused(json);
            assert!(error.contains(words), "{json}: {error}");
        }
    }
}
