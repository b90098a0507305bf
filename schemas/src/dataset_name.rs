use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A dataset's name: its directory name and its SQL schema name, so it must
/// be a plain lowercase SQL identifier: `[a-z][a-z0-9_]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DatasetName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dataset name {name:?}: {reason} (a dataset name is a lowercase letter followed by lowercase letters, digits or '_', e.g. \"tahoe_100m\")")]
pub struct InvalidDatasetName {
    pub name: String,
    pub reason: &'static str,
}

const MAX_LEN: usize = 63;

impl DatasetName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DatasetName {
    type Err = InvalidDatasetName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| {
            Err(InvalidDatasetName {
                name: name.to_owned(),
                reason,
            })
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return refuse("it is empty"),
            Some(first) if !first.is_ascii_lowercase() => {
                return refuse("it must start with a lowercase letter")
            }
            Some(_) => {}
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return refuse("it may hold only lowercase letters, digits and '_'");
        }
        if name.len() > MAX_LEN {
            return refuse("it is longer than 63 characters");
        }
        Ok(Self(name.to_owned()))
    }
}

impl TryFrom<String> for DatasetName {
    type Error = InvalidDatasetName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<DatasetName> for String {
    fn from(name: DatasetName) -> Self {
        name.0
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_identifiers() {
        for name in ["a", "tahoe", "tahoe_100m", "pbmc68k_reduced", "x_1_"] {
            assert_eq!(name.parse::<DatasetName>().unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_anything_else_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("1abc", "start with a lowercase letter"),
            ("_abc", "start with a lowercase letter"),
            (".tmp", "start with a lowercase letter"),
            ("Tahoe", "start with a lowercase letter"),
            ("tahoe-100m", "only lowercase letters"),
            ("ta hoe", "only lowercase letters"),
            ("tahoé", "only lowercase letters"),
        ];
        for (name, reason) in cases {
            let err = name.parse::<DatasetName>().unwrap_err();
            assert!(err.to_string().contains(reason), "{name:?}: {err}");
            assert!(err.to_string().contains(&format!("{name:?}")), "{err}");
        }
        assert!("a".repeat(64).parse::<DatasetName>().is_err());
    }
}
