//! `NAME.collection.json`: several datasets of one data directory served
//! as one (docs/format.md). Only the definition lives here; opening one
//! against its members is the store's.

use serde::{Deserialize, Serialize};

use crate::json::encode_pretty;
use crate::DatasetName;

/// How a collection's definition file is named: `NAME.collection.json`.
pub const COLLECTION_SUFFIX: &str = ".collection.json";

/// Most members a collection may have: each member's gene table is held
/// remapped in memory, and a fetch reads from each member it touches.
pub const MAX_COLLECTION_MEMBERS: usize = 64;

/// Largest definition file read. 64 names of 63 characters and a gene key
/// take under 5 KiB; anything near this is not a definition.
pub const MAX_COLLECTION_FILE_BYTES: u64 = 64 << 10;

/// Longest gene key (a column name of `genes`).
pub const MAX_GENE_KEY_BYTES: usize = 256;

/// The gene key when a definition names none: the AnnData var index.
pub const DEFAULT_GENE_KEY: &str = "gene_id";

/// Which genes a collection's gene space holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Join {
    /// Every gene key of any member, once.
    #[default]
    Outer,
    /// The gene keys every member has.
    Inner,
}

/// A collection's definition: its members in order, the `genes` column
/// that says which genes are the same, and the join of their gene sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionDefinition {
    pub members: Vec<DatasetName>,
    #[serde(default = "default_gene_key")]
    pub gene_key: String,
    #[serde(default)]
    pub join: Join,
}

fn default_gene_key() -> String {
    DEFAULT_GENE_KEY.to_string()
}

/// A definition that breaks the rules of docs/format.md, said in terms of
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum DefinitionError {
    #[error("not a collection definition: {0}")]
    Json(#[from] serde_json::Error),
    #[error("a collection needs at least one member")]
    NoMembers,
    #[error("a collection has at most {MAX_COLLECTION_MEMBERS} members, this one {0}")]
    TooManyMembers(usize),
    #[error("member {0} is listed more than once")]
    DuplicateMember(String),
    #[error("gene_key must be a column name of 1 to {MAX_GENE_KEY_BYTES} bytes, not gene_idx nor a stat_ column")]
    BadGeneKey,
}

impl CollectionDefinition {
    /// A definition that keeps the rules checkable without the members.
    pub fn new(
        members: Vec<DatasetName>,
        gene_key: String,
        join: Join,
    ) -> Result<Self, DefinitionError> {
        let definition = Self {
            members,
            gene_key,
            join,
        };
        definition.check()?;
        Ok(definition)
    }

    /// The definition in `text` (at most [`MAX_COLLECTION_FILE_BYTES`],
    /// which the caller checks before reading it).
    pub fn from_json(text: &str) -> Result<Self, DefinitionError> {
        let definition: Self = serde_json::from_str(text)?;
        definition.check()?;
        Ok(definition)
    }

    pub fn to_json(&self) -> String {
        encode_pretty(self)
    }

    fn check(&self) -> Result<(), DefinitionError> {
        match self.members.len() {
            0 => return Err(DefinitionError::NoMembers),
            n if n > MAX_COLLECTION_MEMBERS => return Err(DefinitionError::TooManyMembers(n)),
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(repeated) = self.members.iter().find(|m| !seen.insert(*m)) {
            return Err(DefinitionError::DuplicateMember(repeated.to_string()));
        }
        // gene_idx and the stat_ columns are the collection's own in its
        // `genes`, beside the key.
        let reserved = self.gene_key == "gene_idx" || self.gene_key.starts_with("stat_");
        if reserved || self.gene_key.is_empty() || self.gene_key.len() > MAX_GENE_KEY_BYTES {
            return Err(DefinitionError::BadGeneKey);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_defaults_to_an_outer_join_on_gene_id() {
        let definition = CollectionDefinition::from_json(r#"{"members": ["a", "b"]}"#).unwrap();
        assert_eq!(definition.gene_key, "gene_id");
        assert_eq!(definition.join, Join::Outer);
        let again = CollectionDefinition::from_json(&definition.to_json()).unwrap();
        assert_eq!(again, definition);
    }

    #[test]
    fn an_inner_join_on_another_key_is_read_as_written() {
        let text = r#"{"members": ["b", "a"], "gene_key": "symbol", "join": "inner"}"#;
        let definition = CollectionDefinition::from_json(text).unwrap();
        let members: Vec<&str> = definition.members.iter().map(|m| m.as_str()).collect();
        assert_eq!(members, ["b", "a"], "member order is kept");
        assert_eq!(
            (definition.gene_key.as_str(), definition.join),
            ("symbol", Join::Inner)
        );
    }

    #[test]
    fn broken_definitions_are_refused_saying_why() {
        let refused = |text: &str| {
            CollectionDefinition::from_json(text)
                .unwrap_err()
                .to_string()
        };
        assert!(refused(r#"{"members": []}"#).contains("at least one member"));
        assert!(refused(r#"{"members": ["a", "a"]}"#).contains("member a is listed more than once"));
        assert!(refused(r#"{"members": ["a"], "extra": 1}"#).contains("unknown field `extra`"));
        assert!(refused(r#"{"members": ["A"]}"#).contains("invalid dataset name"));
        assert!(refused(r#"{"members": ["a"], "join": "left"}"#).contains("unknown variant"));
        assert!(refused(r#"{"members": ["a"], "gene_key": ""}"#).contains("gene_key"));
        assert!(refused(r#"{"members": ["a"], "gene_key": "gene_idx"}"#).contains("gene_key"));
        let many: Vec<String> = (0..=MAX_COLLECTION_MEMBERS)
            .map(|i| format!("\"d{i}\""))
            .collect();
        let text = format!(r#"{{"members": [{}]}}"#, many.join(","));
        assert!(refused(&text).contains("at most 64 members, this one 65"));
    }
}
