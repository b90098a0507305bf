//! A collection's gene space: its members' genes aligned by the gene key.
//! The stored space of its rows is the outer union: every key once, the
//! first member's genes in its order, then each later member's new keys in
//! its order. An inner collection's gene space is the keys every member
//! has, in the first member's order: a subset of the stored space, so a
//! cell's total over all its stored genes stays what it was.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::Join;

use super::error::CollectionError;
use crate::{Dataset, Table, GENE_IDX, STAT_N_CELLS};

/// Members holding the gene: a column of a collection's `genes`.
pub const STAT_N_MEMBERS: &str = "stat_n_members";

/// Duplicate keys an error lists, at most.
const KEYS_SHOWN: usize = 10;

#[derive(Debug)]
pub(crate) struct GeneAlignment {
    /// Per member: its gene index → stored (outer) position.
    member_positions: Vec<Vec<u32>>,
    /// Whether each member's genes keep their order in the stored space,
    /// so its rows' entries need no sorting.
    member_keeps_order: Vec<bool>,
    /// Stored genes.
    n_stored: u64,
    /// Gene space position → stored position; `None` when they are one
    /// (an outer join).
    space: Option<Vec<u32>>,
    /// The `genes` table over the gene space.
    table: RecordBatch,
}

/// One gene of the stored space, as the members hold it.
struct StoredGene {
    key: String,
    n_cells: Option<u64>,
    n_members: u32,
}

impl GeneAlignment {
    pub(crate) fn new(
        collection: &str,
        members: &[Arc<Dataset>],
        key_column: &str,
        join: Join,
    ) -> Result<Self, CollectionError> {
        let mut stored: Vec<StoredGene> = Vec::new();
        let mut position_of: HashMap<String, u32> = HashMap::new();
        let mut member_positions = Vec::with_capacity(members.len());
        for member in members {
            let keys = member_keys(collection, member, key_column)?;
            let n_cells = member.column(Table::Genes, STAT_N_CELLS)?.1;
            // UInt64 by the format; anything else counts as unknown.
            let n_cells = n_cells.as_primitive_opt::<UInt64Type>();
            let mut positions = Vec::with_capacity(keys.len());
            // Every key is present: `member_keys` checked.
            for gene in 0..keys.len() {
                let key = keys.value(gene);
                let cells = n_cells.and_then(|n| n.is_valid(gene).then(|| n.value(gene)));
                let position = *position_of.entry(key.to_string()).or_insert_with(|| {
                    stored.push(StoredGene {
                        key: key.to_string(),
                        n_cells: Some(0),
                        n_members: 0,
                    });
                    (stored.len() - 1) as u32
                });
                let united = &mut stored[position as usize];
                united.n_cells = united.n_cells.zip(cells).map(|(a, b)| a + b);
                united.n_members += 1;
                positions.push(position);
            }
            member_positions.push(positions);
        }
        let space = match join {
            Join::Outer => None,
            Join::Inner => {
                let all = members.len() as u32;
                let shared =
                    (0..stored.len() as u32).filter(|&g| stored[g as usize].n_members == all);
                let shared: Vec<u32> = shared.collect();
                if shared.is_empty() {
                    return Err(CollectionError::EmptyInnerJoin(collection.to_string()));
                }
                Some(shared)
            }
        };
        let table = genes_table(&stored, space.as_deref(), key_column)?;
        Ok(Self {
            member_keeps_order: member_positions
                .iter()
                .map(|p| p.windows(2).all(|w| w[0] < w[1]))
                .collect(),
            member_positions,
            n_stored: stored.len() as u64,
            space,
            table,
        })
    }

    pub(crate) fn member_positions(&self, member: usize) -> &[u32] {
        &self.member_positions[member]
    }

    pub(crate) fn member_keeps_order(&self, member: usize) -> bool {
        self.member_keeps_order[member]
    }

    pub(crate) fn n_stored(&self) -> u64 {
        self.n_stored
    }

    pub(crate) fn space(&self) -> Option<&[u32]> {
        self.space.as_deref()
    }

    pub(crate) fn table(&self) -> &RecordBatch {
        &self.table
    }
}

/// `member`'s gene keys, each present and distinct.
fn member_keys(
    collection: &str,
    member: &Dataset,
    key: &str,
) -> Result<StringArray, CollectionError> {
    let name = || member.manifest().name.to_string();
    if member.genes_table().schema().index_of(key).is_err() {
        return Err(CollectionError::NoGeneKey {
            collection: collection.to_string(),
            member: name(),
            key: key.to_string(),
        });
    }
    let values = member.column(Table::Genes, key)?.1;
    let path = member.dir().join(&member.manifest().genes.file);
    let keys =
        arrow_cast::cast(&values, &DataType::Utf8).map_err(crate::StoreError::arrow(&path))?;
    let keys = keys.as_string::<i32>().clone();
    if keys.null_count() > 0 {
        return Err(CollectionError::MissingGeneKeys {
            collection: collection.to_string(),
            member: name(),
            key: key.to_string(),
        });
    }
    let repeated = repeated_keys(&keys);
    if !repeated.is_empty() {
        let shown: Vec<String> = repeated
            .iter()
            .take(KEYS_SHOWN)
            .map(|k| format!("{k:?}"))
            .collect();
        let more = match repeated.len().saturating_sub(KEYS_SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        return Err(CollectionError::DuplicateGeneKeys {
            collection: collection.to_string(),
            member: name(),
            key: key.to_string(),
            values: format!("{}{more}", shown.join(", ")),
        });
    }
    Ok(keys)
}

/// The keys `keys` holds more than once, each once, sorted.
fn repeated_keys(keys: &StringArray) -> Vec<String> {
    let mut seen = HashSet::with_capacity(keys.len());
    let mut repeated: Vec<String> = (keys.iter().flatten())
        .filter(|key| !seen.insert(*key))
        .map(str::to_string)
        .collect();
    repeated.sort_unstable();
    repeated.dedup();
    repeated
}

/// `genes` over the gene space: `gene_idx`, the key, `stat_n_cells` (the
/// members' counts summed; null if a member holding the gene has none)
/// and `stat_n_members`.
fn genes_table(
    stored: &[StoredGene],
    space: Option<&[u32]>,
    key: &str,
) -> Result<RecordBatch, CollectionError> {
    let genes: Vec<&StoredGene> = match space {
        None => stored.iter().collect(),
        Some(space) => space.iter().map(|&g| &stored[g as usize]).collect(),
    };
    let schema = Schema::new(vec![
        Field::new(GENE_IDX, DataType::UInt32, false),
        Field::new(key, DataType::Utf8, false),
        Field::new(STAT_N_CELLS, DataType::UInt64, true),
        Field::new(STAT_N_MEMBERS, DataType::UInt32, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(0..genes.len() as u32)),
        Arc::new(StringArray::from_iter_values(genes.iter().map(|g| &g.key))),
        Arc::new(UInt64Array::from_iter(genes.iter().map(|g| g.n_cells))),
        Arc::new(UInt32Array::from_iter_values(
            genes.iter().map(|g| g.n_members),
        )),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|source| {
        CollectionError::Store(crate::StoreError::Arrow {
            path: key.into(),
            source,
        })
    })
}
