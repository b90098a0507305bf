//! The output gene space of a stream: all genes, the genes a list of
//! names picks (in the list's order), or those a SQL predicate over
//! `genes` picks (in `gene_idx` order). Each is a map from the stored
//! gene space rows are read in; a collection's `gene_idx` are positions
//! of its own gene space, each mapped to a stored position first.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_buffer::ArrowNativeType;
use arrow_schema::DataType;
use cellflight_schemas::StreamRequest;
use cellflight_sql::{select_genes, Access, ByteLru, CacheCost, CatalogSnapshot};
use cellflight_store::{Served, Table};

use crate::engine::Engine;
use crate::error::EngineError;

/// Marks a stored gene outside the output space.
const DROPPED: u32 = u32::MAX;

/// Names listed in an error, at most.
const NAMES_SHOWN: usize = 20;

/// Where each stored gene goes in the output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GeneSpace {
    n_genes: u64,
    /// Stored gene index → output position (or `DROPPED`); `None` when
    /// the output space is the stored one.
    positions: Option<Vec<u32>>,
    /// Whether output positions rise with stored indices, so a row's
    /// selected entries need no re-sorting.
    keeps_order: bool,
}

impl GeneSpace {
    /// Every stored gene, in stored order.
    pub(crate) fn all(n_genes: u64) -> Self {
        Self {
            n_genes,
            positions: None,
            keeps_order: true,
        }
    }

    /// The output space whose position j is stored gene `stored[j]`
    /// (distinct, each below `n_stored`).
    pub(crate) fn from_stored(stored: &[u32], n_stored: u64) -> Self {
        let mut positions = vec![DROPPED; n_stored as usize];
        for (output, &gene) in stored.iter().enumerate() {
            positions[gene as usize] = output as u32;
        }
        Self {
            n_genes: stored.len() as u64,
            positions: Some(positions),
            keeps_order: stored.windows(2).all(|w| w[0] < w[1]),
        }
    }

    /// Genes in the output space.
    pub(crate) fn n_genes(&self) -> u64 {
        self.n_genes
    }

    /// Whether the output space is the stored one, unchanged.
    pub(crate) fn is_all(&self) -> bool {
        self.positions.is_none()
    }

    pub(crate) fn keeps_order(&self) -> bool {
        self.keeps_order
    }

    /// The stored gene at each output position.
    pub(crate) fn stored_genes(&self) -> Vec<u32> {
        let Some(positions) = &self.positions else {
            return (0..self.n_genes as u32).collect();
        };
        let mut stored = vec![0; self.n_genes as usize];
        for (gene, &position) in positions.iter().enumerate() {
            if position != DROPPED {
                stored[position as usize] = gene as u32;
            }
        }
        stored
    }

    /// Calls `keep` with (output position, value) for each entry of a row
    /// (stored gene indices and their values) whose gene is in the output
    /// space, in stored order.
    #[inline]
    pub(crate) fn for_each_kept<G: GeneIndex, V: Copy>(
        &self,
        indices: &[G],
        values: &[V],
        mut keep: impl FnMut(u32, V),
    ) {
        let entries = indices.iter().zip(values);
        match &self.positions {
            None => entries.for_each(|(&gene, &value)| keep(gene.gene(), value)),
            Some(positions) => {
                for (&gene, &value) in entries {
                    let position = positions[gene.gene() as usize];
                    if position != DROPPED {
                        keep(position, value);
                    }
                }
            }
        }
    }

    /// The gene space `request` asks for over `dataset`, computed once per
    /// dataset version, selection and caller's access.
    pub(crate) async fn resolve(
        engine: &Engine,
        snapshot: &CatalogSnapshot,
        dataset: &Served,
        request: &StreamRequest,
    ) -> Result<Arc<Self>, EngineError> {
        let n_stored = dataset.n_stored_genes();
        let selection = match (&request.genes, &request.genes_query) {
            (Some(names), _) => GeneSelection::Named {
                column: (request.gene_column.as_deref())
                    .unwrap_or(dataset.gene_key())
                    .to_string(),
                names: names.clone(),
            },
            (None, Some(predicate)) => GeneSelection::Query(predicate.clone()),
            // An inner collection's gene space is part of its stored one.
            (None, None) => {
                return Ok(Arc::new(match dataset.gene_space() {
                    None => Self::all(n_stored),
                    Some(space) => Self::from_stored(space, n_stored),
                }))
            }
        };
        let key = GeneSpaceKey {
            version: dataset.version().to_string(),
            selection,
            access: snapshot.access().clone(),
        };
        let compute = || async {
            let selected = match &key.selection {
                GeneSelection::Named { column, names } => {
                    let values = engine
                        .columns
                        .get_or_read(dataset, Table::Genes, column)
                        .await?;
                    named_genes(names, column, values.array())?
                }
                GeneSelection::Query(predicate) => {
                    select_genes(&engine.sql, snapshot, dataset.name(), predicate).await?
                }
            };
            let stored: Vec<u32> = match dataset.gene_space() {
                None => selected,
                Some(space) => selected.iter().map(|&gene| space[gene as usize]).collect(),
            };
            if stored.is_empty() {
                return Err(EngineError::Unservable(
                    "the gene selection is empty: genes or genes_query must select at least one gene"
                        .into(),
                ));
            }
            Ok(Self::from_stored(&stored, n_stored))
        };
        engine.gene_spaces.get_or_try_insert(&key, compute).await
    }
}

/// A stored gene index.
pub(crate) trait GeneIndex: ArrowNativeType {
    fn gene(self) -> u32;
}

impl GeneIndex for u16 {
    #[inline]
    fn gene(self) -> u32 {
        u32::from(self)
    }
}

impl GeneIndex for u32 {
    #[inline]
    fn gene(self) -> u32 {
        self
    }
}

impl CacheCost for GeneSpace {
    fn cost_bytes(&self) -> usize {
        self.positions
            .as_ref()
            .map_or(0, |p| p.len() * size_of::<u32>())
    }
}

/// How a request picks its genes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum GeneSelection {
    Named { column: String, names: Vec<String> },
    Query(String),
}

/// Gene spaces by dataset version, selection and the caller's access (a
/// `genes_query` can read only what the caller may).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GeneSpaceKey {
    version: String,
    selection: GeneSelection,
    access: Access,
}

pub(crate) type GeneSpaceCache = ByteLru<GeneSpaceKey, GeneSpace>;

/// The stored index of each of `names` in the genes column `column`
/// (`values`); unknown names, names the column holds more than once, and
/// names asked twice are errors listing them.
fn named_genes(
    names: &[String],
    column: &str,
    values: &dyn Array,
) -> Result<Vec<u32>, EngineError> {
    let values = arrow_cast::cast(values, &DataType::Utf8).map_err(|_| {
        EngineError::Unservable(format!(
            "gene_column {column:?} is of type {}, not text",
            values.data_type()
        ))
    })?;
    let values = values.as_string::<i32>();
    let wanted: HashMap<&str, usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    if wanted.len() < names.len() {
        return Err(listed(
            "genes names some genes more than once",
            repeated(names),
        ));
    }
    let mut found: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
    for (gene, value) in values.iter().enumerate() {
        if let Some(&i) = value.and_then(|v| wanted.get(v)) {
            found[i].push(gene as u32);
        }
    }
    let unknown: Vec<&str> = select(names, &found, |hits| hits.is_empty());
    if !unknown.is_empty() {
        return Err(listed(
            &format!("unknown genes (no {column} equals them)"),
            unknown,
        ));
    }
    let ambiguous: Vec<&str> = select(names, &found, |hits| hits.len() > 1);
    if !ambiguous.is_empty() {
        return Err(listed(
            &format!("ambiguous genes ({column} holds each more than once; name them by gene_id)"),
            ambiguous,
        ));
    }
    Ok(found.into_iter().map(|hits| hits[0]).collect())
}

fn select<'a>(
    names: &'a [String],
    found: &[Vec<u32>],
    keep: impl Fn(&[u32]) -> bool,
) -> Vec<&'a str> {
    names
        .iter()
        .zip(found)
        .filter(|(_, hits)| keep(hits))
        .map(|(name, _)| name.as_str())
        .collect()
}

fn repeated(names: &[String]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    let mut repeated: Vec<&str> = names
        .iter()
        .filter(|n| !seen.insert(n.as_str()))
        .map(String::as_str)
        .collect();
    repeated.dedup();
    repeated
}

/// `what: a, b, c` (the first few names, and how many more).
fn listed(what: &str, names: Vec<&str>) -> EngineError {
    let shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| format!("{n:?}"))
        .collect();
    let more = match names.len().saturating_sub(NAMES_SHOWN) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    EngineError::Unservable(format!("{what}: {}{more}", shown.join(", ")))
}

#[cfg(test)]
mod tests {
    use arrow_array::StringArray;

    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn names_map_to_stored_positions_in_the_order_asked() {
        let column = StringArray::from(vec![Some("A"), Some("B"), None, Some("C")]);
        let stored = named_genes(&names(&["C", "A"]), "gene_id", &column).unwrap();
        assert_eq!(stored, [3, 0]);
        let space = GeneSpace::from_stored(&stored, 4);
        assert_eq!(space.n_genes(), 2);
        assert!(!space.keeps_order());
        let mut kept = Vec::new();
        space.for_each_kept(
            &[0u16, 1, 2, 3],
            &["a", "b", "c", "d"],
            |position, value| kept.push((position, value)),
        );
        assert_eq!(kept, [(1, "a"), (0, "d")], "stored order, output positions");
        assert_eq!(space.stored_genes(), [3, 0]);
        assert_eq!(GeneSpace::all(3).stored_genes(), [0, 1, 2]);
    }

    #[test]
    fn unknown_ambiguous_and_repeated_names_are_listed() {
        let column = StringArray::from(vec!["A", "B", "B"]);
        let error = named_genes(&names(&["A", "X", "Y"]), "symbol", &column).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"unknown genes (no symbol equals them): "X", "Y""#
        );
        let error = named_genes(&names(&["B"]), "symbol", &column).unwrap_err();
        assert!(error.to_string().starts_with("ambiguous genes"), "{error}");
        let error = named_genes(&names(&["A", "A"]), "symbol", &column).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"genes names some genes more than once: "A""#
        );
    }
}
