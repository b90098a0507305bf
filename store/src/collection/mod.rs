//! Collections: several datasets of one data directory served as one,
//! defined by a file `NAME.collection.json` beside them (docs/format.md).
//! Opening one checks it against its members, and works out once what
//! serving it needs: each member's cell offset, its genes' positions in
//! the collection's gene space, and the united `cells` columns.

mod cells;
mod column;
mod error;
mod files;
mod genes;
mod widen;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use cellflight_schemas::{CollectionDefinition, DatasetName, IndexType, ValueType};

pub use cells::{CellColumn, CellSource, SOURCE_DATASET};
pub use error::CollectionError;
pub use files::{collection_files, read_definition, write_definition, CollectionFile};
pub use genes::STAT_N_MEMBERS;

use crate::Dataset;
use genes::GeneAlignment;

/// Most cells a collection may hold: a stream addresses cells by 32-bit
/// ids (the sampler's limit).
pub const MAX_COLLECTION_CELLS: u64 = 1 << 32;

/// An opened collection: its definition over one version of each member.
#[derive(Debug)]
pub struct Collection {
    name: DatasetName,
    /// The definition file (named in errors).
    path: PathBuf,
    definition: CollectionDefinition,
    version: String,
    members: Vec<Arc<Dataset>>,
    /// `offsets[m]` is member m's first cell id; the last is `n_cells`.
    offsets: Vec<u64>,
    genes: GeneAlignment,
    cells: Vec<CellColumn>,
}

impl Collection {
    /// The collection `definition` (read from `path`) names over the
    /// datasets of its data directory, `datasets` by name;
    /// `collections` are the names of the directory's collections (which
    /// no member may be).
    pub fn open(
        name: DatasetName,
        path: &Path,
        definition: CollectionDefinition,
        datasets: &BTreeMap<String, Arc<Dataset>>,
        collections: &[DatasetName],
    ) -> Result<Self, CollectionError> {
        let collection = name.as_str();
        if datasets.contains_key(collection) {
            return Err(CollectionError::NameTaken(collection.to_string()));
        }
        let mut members = Vec::with_capacity(definition.members.len());
        for member in &definition.members {
            if collections.contains(member) {
                return Err(CollectionError::NestedMember {
                    collection: collection.to_string(),
                    member: member.to_string(),
                });
            }
            let dataset =
                datasets
                    .get(member.as_str())
                    .ok_or_else(|| CollectionError::UnknownMember {
                        collection: collection.to_string(),
                        member: member.to_string(),
                    })?;
            members.push(dataset.clone());
        }
        let offsets = cell_offsets(collection, &members)?;
        let cells = cells::unite_cells(collection, &members)?;
        let genes =
            GeneAlignment::new(collection, &members, &definition.gene_key, definition.join)?;
        Ok(Self {
            version: version(&name, &definition, &members),
            name,
            path: path.to_owned(),
            definition,
            members,
            offsets,
            genes,
            cells,
        })
    }

    pub fn name(&self) -> &DatasetName {
        &self.name
    }

    pub fn definition(&self) -> &CollectionDefinition {
        &self.definition
    }

    /// A hash of the definition and of the members' versions: a member
    /// replaced makes a new collection version.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn members(&self) -> &[Arc<Dataset>] {
        &self.members
    }

    /// Member m's cells are the collection's `offsets()[m]..offsets()[m + 1]`.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }

    pub fn n_cells(&self) -> u64 {
        self.offsets[self.members.len()]
    }

    /// Genes of the gene space (rows of `genes`).
    pub fn n_genes(&self) -> u64 {
        self.genes.table().num_rows() as u64
    }

    /// Stored entries of all members.
    pub fn nnz(&self) -> u64 {
        self.members.iter().map(|m| m.manifest().nnz).sum()
    }

    /// Genes of the stored space its rows are read in: the members' genes
    /// united (the outer join, whatever the collection's join).
    pub fn n_stored_genes(&self) -> u64 {
        self.genes.n_stored()
    }

    /// Member m's gene index → stored position.
    pub fn member_gene_positions(&self, member: usize) -> &[u32] {
        self.genes.member_positions(member)
    }

    /// Whether member m's genes keep their order in the stored space.
    pub fn member_keeps_gene_order(&self, member: usize) -> bool {
        self.genes.member_keeps_order(member)
    }

    /// The stored position of each gene of the gene space (`gene_idx`);
    /// `None` when the two are one (an outer join).
    pub fn gene_space(&self) -> Option<&[u32]> {
        self.genes.space()
    }

    /// The columns of `cells`.
    pub fn cells(&self) -> &[CellColumn] {
        &self.cells
    }

    /// `genes`, whole: small (a row a gene), so held in memory.
    pub fn genes_table(&self) -> &RecordBatch {
        self.genes.table()
    }

    /// The types rows are read in: indices for the stored gene space,
    /// values of the widest member type (`ValueType::widest_with`); `None`
    /// if a member is obs-only.
    pub fn matrix_types(&self) -> Option<(IndexType, ValueType)> {
        let mut value_type: Option<ValueType> = None;
        for member in &self.members {
            let member_type = member.manifest().matrix.as_ref()?.value_type;
            value_type = Some(value_type.map_or(member_type, |t| t.widest_with(member_type)));
        }
        Some((
            IndexType::for_gene_count(self.n_stored_genes()),
            value_type?,
        ))
    }

    /// The most genes one cell of any member stores, if every member's
    /// footer says.
    pub fn largest_cell_genes(&self) -> Option<u64> {
        let mut largest = 0;
        for member in &self.members {
            largest = largest.max(member.largest_cell_genes()?);
        }
        Some(largest)
    }
}

/// Every collection defined in data directory `dir` over its `datasets`:
/// those that open, and the errors of those that cannot be served (a
/// server skips them, saying why, as it skips a damaged dataset).
pub fn open_collections(
    dir: &Path,
    datasets: &[Arc<Dataset>],
) -> (Vec<Arc<Collection>>, Vec<CollectionError>) {
    let files = match collection_files(dir) {
        Ok(files) => files,
        Err(error) => return (Vec::new(), vec![error]),
    };
    let names: Vec<DatasetName> = files
        .iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect();
    let by_name: BTreeMap<String, Arc<Dataset>> = datasets
        .iter()
        .map(|d| (d.manifest().name.to_string(), d.clone()))
        .collect();
    let (mut opened, mut failed) = (Vec::new(), Vec::new());
    for file in files {
        let open = file.and_then(|(name, path)| {
            let definition = read_definition(&path)?;
            Collection::open(name, &path, definition, &by_name, &names)
        });
        match open {
            Ok(collection) => opened.push(Arc::new(collection)),
            Err(error) => failed.push(error),
        }
    }
    (opened, failed)
}

fn cell_offsets(collection: &str, members: &[Arc<Dataset>]) -> Result<Vec<u64>, CollectionError> {
    let mut offsets = vec![0u64];
    for member in members {
        let end = offsets[offsets.len() - 1] + member.manifest().n_cells;
        offsets.push(end);
    }
    let n_cells = offsets[members.len()];
    if n_cells > MAX_COLLECTION_CELLS {
        return Err(CollectionError::TooManyCells {
            collection: collection.to_string(),
            n_cells,
            max: MAX_COLLECTION_CELLS,
        });
    }
    Ok(offsets)
}

/// `collection-` and 16 hex digits of a 64-bit FNV-1a hash of the name,
/// the definition and each member's name and version: stable across
/// servers and restarts, new when any of them changes. (Not a digest
/// against forgery: versions only tell a changed collection.)
fn version(
    name: &DatasetName,
    definition: &CollectionDefinition,
    members: &[Arc<Dataset>],
) -> String {
    let mut hash = Fnv1a::default();
    hash.write(name.as_str());
    hash.write(&definition.to_json());
    for member in members {
        hash.write(member.manifest().name.as_str());
        hash.write(&member.manifest().version);
    }
    format!("collection-{:016x}", hash.0)
}

struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// `text` and a terminating 0xff (a byte no UTF-8 text holds), so
    /// ("ab", "c") and ("a", "bc") hash apart.
    fn write(&mut self, text: &str) {
        for &byte in text.as_bytes().iter().chain([0xff].iter()) {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}
