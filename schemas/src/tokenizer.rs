//! The `tokenizer` of a `"format": "tokens"` request (docs/protocol.md):
//! which model's tokens, from which vocabulary, and how they are laid out;
//! and the spec a plan reports, every parameter filled and the
//! vocabulary's content hash added.

use serde::{Deserialize, Serialize};

use crate::RequestError;

/// The upper bounds of the tokenizer's keys, checked when a request is read.
pub mod token_bounds {
    /// Tokens a cell, special tokens included.
    pub const MAX_LENGTH: u32 = 1 << 16;
    /// scGPT value bins: a bin is sent as UInt16, and bins run to `n_bins − 1`.
    pub const N_BINS: u32 = 1 << 16;
    /// Characters of a vocabulary name (as for dataset names).
    pub const VOCABULARY_NAME: usize = 63;
}

/// Names of the columns a `tokens` minibatch has beside `cell_id`,
/// `values`, `is_padding` and obs columns.
pub const INPUT_IDS_COLUMN: &str = "input_ids";
pub const ATTENTION_MASK_COLUMN: &str = "attention_mask";

/// The special tokens' keys in a vocabulary table.
pub const PAD_TOKEN: &str = "<pad>";
pub const CLS_TOKEN: &str = "<cls>";
pub const EOS_TOKEN: &str = "<eos>";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// Rank-value encoding: genes by normalised expression, descending.
    Geneformer,
    /// Gene tokens with their expression binned by the cell's quantiles.
    Scgpt,
}

/// How rows of tokens are shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// Every row exactly `max_length` tokens, `<pad>` after the cell's own,
    /// with an attention mask.
    #[default]
    MaxLength,
    /// Each row as long as the cell's tokens (ragged lists), no mask.
    None,
}

/// The request's `tokenizer` object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokenizer {
    pub kind: TokenizerKind,
    /// The name of a token table the server holds (`NAME.vocabulary.parquet`).
    pub vocabulary: String,
    /// Tokens a cell, special tokens included.
    #[serde(default = "default_max_length")]
    pub max_length: u32,
    /// Prepend `<cls>`.
    #[serde(default)]
    pub cls: bool,
    /// Append `<eos>`.
    #[serde(default)]
    pub eos: bool,
    #[serde(default)]
    pub padding: Padding,
    /// scGPT only: value bins, zero's bin included (default
    /// [`DEFAULT_N_BINS`]); absent for Geneformer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_bins: Option<u32>,
}

pub const DEFAULT_MAX_LENGTH: u32 = 2_048;
pub const DEFAULT_N_BINS: u32 = 51;

fn default_max_length() -> u32 {
    DEFAULT_MAX_LENGTH
}

impl Tokenizer {
    /// Checks the keys and fills `n_bins` for scGPT, so that a ticket and
    /// a plan's spec hold every parameter.
    pub(crate) fn normalised(mut self) -> Result<Self, RequestError> {
        let refuse = |message: String| Err(RequestError::Inconsistent(message));
        check_vocabulary_name(&self.vocabulary)?;
        let specials = self.special_tokens();
        if self.max_length > token_bounds::MAX_LENGTH {
            return refuse(format!(
                "tokenizer.max_length must be at most {}, got {}",
                token_bounds::MAX_LENGTH,
                self.max_length
            ));
        }
        if self.max_length <= specials {
            return refuse(format!(
                "tokenizer.max_length must leave room for a gene after the {specials} special tokens, got {}",
                self.max_length
            ));
        }
        match (self.kind, self.n_bins) {
            (TokenizerKind::Geneformer, Some(_)) => {
                return refuse("tokenizer.n_bins is for \"kind\": \"scgpt\" only".into())
            }
            (TokenizerKind::Geneformer, None) => {}
            (TokenizerKind::Scgpt, n_bins) => {
                let n_bins = n_bins.unwrap_or(DEFAULT_N_BINS);
                if !(2..=token_bounds::N_BINS).contains(&n_bins) {
                    return refuse(format!(
                        "tokenizer.n_bins must be from 2 to {}, got {n_bins}",
                        token_bounds::N_BINS
                    ));
                }
                self.n_bins = Some(n_bins);
            }
        }
        Ok(self)
    }

    /// `<cls>` and `<eos>` tokens a row holds.
    pub fn special_tokens(&self) -> u32 {
        u32::from(self.cls) + u32::from(self.eos)
    }

    /// Gene tokens a row holds at most.
    pub fn max_genes(&self) -> u32 {
        self.max_length.saturating_sub(self.special_tokens())
    }

    /// The token columns this tokenizer makes.
    pub fn layout(&self) -> TokenLayout {
        TokenLayout {
            max_length: self.max_length,
            padded: self.padding == Padding::MaxLength,
            values: self.kind == TokenizerKind::Scgpt,
        }
    }

    /// The spec a plan reports: these parameters and the vocabulary's hash.
    pub fn spec(&self, vocabulary_hash: &str) -> TokenizerSpec {
        TokenizerSpec {
            tokenizer: self.clone(),
            vocabulary_hash: vocabulary_hash.to_owned(),
        }
    }
}

/// Vocabulary names follow the dataset-name rules, so a name is a file
/// name and never a path.
fn check_vocabulary_name(name: &str) -> Result<(), RequestError> {
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= token_bounds::VOCABULARY_NAME;
    if well_formed {
        return Ok(());
    }
    let shown: String = name
        .chars()
        .take(token_bounds::VOCABULARY_NAME + 1)
        .collect();
    Err(RequestError::Inconsistent(format!(
        "tokenizer.vocabulary {shown:?} is not a vocabulary name: a lowercase letter, then lowercase letters, digits or '_', at most {} characters",
        token_bounds::VOCABULARY_NAME
    )))
}

/// What the token columns of a minibatch are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLayout {
    pub max_length: u32,
    /// Fixed-size rows with an `attention_mask`, or ragged lists.
    pub padded: bool,
    /// A `values` column of bins (scGPT).
    pub values: bool,
}

impl TokenLayout {
    /// The most bytes a cell's token columns take: a UInt32 id, a UInt16
    /// bin and a mask bit (a byte, generously) per token.
    pub fn max_cell_bytes(&self) -> u64 {
        let per_token = 4 + if self.values { 2 } else { 0 } + u64::from(self.padded);
        u64::from(self.max_length) * per_token
    }
}

/// The tokenizer of a plan, as its `app_metadata` and a checkpoint record
/// it: every parameter (defaults filled) and the content hash of the
/// vocabulary (SHA-256, lowercase hex) the plan was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerSpec {
    #[serde(flatten)]
    pub tokenizer: Tokenizer,
    pub vocabulary_hash: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer(json: &str) -> Result<Tokenizer, String> {
        serde_json::from_str::<Tokenizer>(json)
            .map_err(|e| e.to_string())?
            .normalised()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_filled_and_n_bins_only_for_scgpt() {
        let geneformer = tokenizer(r#"{"kind": "geneformer", "vocabulary": "gf"}"#).unwrap();
        assert_eq!(
            (geneformer.max_length, geneformer.cls, geneformer.eos),
            (2_048, false, false)
        );
        assert_eq!(
            (geneformer.padding, geneformer.n_bins),
            (Padding::MaxLength, None)
        );
        let scgpt = tokenizer(r#"{"kind": "scgpt", "vocabulary": "v"}"#).unwrap();
        assert_eq!(scgpt.n_bins, Some(51));
        assert_eq!(
            scgpt.layout(),
            TokenLayout {
                max_length: 2_048,
                padded: true,
                values: true
            }
        );
    }

    #[test]
    fn out_of_range_keys_are_refused_naming_the_key_and_the_value() {
        let cases = [
            (
                r#"{"kind": "scgpt", "vocabulary": "v", "max_length": 65537}"#,
                "tokenizer.max_length must be at most 65536, got 65537",
            ),
            (
                r#"{"kind": "scgpt", "vocabulary": "v", "max_length": 2, "cls": true, "eos": true}"#,
                "room for a gene after the 2 special tokens, got 2",
            ),
            (
                r#"{"kind": "scgpt", "vocabulary": "v", "n_bins": 1}"#,
                "tokenizer.n_bins must be from 2 to 65536, got 1",
            ),
            (
                r#"{"kind": "geneformer", "vocabulary": "v", "n_bins": 51}"#,
                "n_bins is for \"kind\": \"scgpt\" only",
            ),
            (
                r#"{"kind": "geneformer", "vocabulary": "../etc/passwd"}"#,
                "is not a vocabulary name",
            ),
            (r#"{"kind": "bert", "vocabulary": "v"}"#, "unknown variant"),
            (
                r#"{"kind": "scgpt", "vocabulary": "v", "bins": 3}"#,
                "unknown field `bins`",
            ),
        ];
        for (json, words) in cases {
            let error = tokenizer(json).unwrap_err();
            assert!(error.contains(words), "{json}: {error}");
        }
    }

    #[test]
    fn a_spec_is_the_tokenizer_flat_with_its_vocabulary_hash() {
        let scgpt = tokenizer(r#"{"kind": "scgpt", "vocabulary": "v", "cls": true}"#).unwrap();
        let json = serde_json::to_string(&scgpt.spec("ab12")).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"scgpt","vocabulary":"v","max_length":2048,"cls":true,"eos":false,"padding":"max_length","n_bins":51,"vocabulary_hash":"ab12"}"#
        );
    }
}
