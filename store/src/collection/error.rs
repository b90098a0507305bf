use std::io;
use std::path::PathBuf;

use cellflight_schemas::{DefinitionError, InvalidDatasetName, MAX_COLLECTION_FILE_BYTES};

use crate::StoreError;

/// Why a collection cannot be served (or written): each names the
/// collection and, where one is at fault, the member.
#[derive(Debug, thiserror::Error)]
pub enum CollectionError {
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: over {MAX_COLLECTION_FILE_BYTES} bytes, too large for a collection definition", .0.display())]
    TooLarge(PathBuf),
    #[error("{}: {source}", .path.display())]
    Definition {
        path: PathBuf,
        source: DefinitionError,
    },
    #[error("{}: {source}", .path.display())]
    InvalidName {
        path: PathBuf,
        source: InvalidDatasetName,
    },
    #[error("collection {0}: a dataset already has that name")]
    NameTaken(String),
    #[error("collection {collection}: member {member} is not a dataset of the data directory")]
    UnknownMember { collection: String, member: String },
    #[error("collection {collection}: member {member} is a collection; collections do not nest")]
    NestedMember { collection: String, member: String },
    #[error("collection {collection}: member {member}'s cells already have a column source_dataset, which the collection adds")]
    SourceDatasetTaken { collection: String, member: String },
    #[error(
        "collection {collection}: member {member}'s genes have no column {key:?} (the gene key)"
    )]
    NoGeneKey {
        collection: String,
        member: String,
        key: String,
    },
    #[error("collection {collection}: member {member}'s gene key {key} is missing for some genes")]
    MissingGeneKeys {
        collection: String,
        member: String,
        key: String,
    },
    #[error("collection {collection}: member {member}'s gene key {key} holds some values more than once: {values}")]
    DuplicateGeneKeys {
        collection: String,
        member: String,
        key: String,
        values: String,
    },
    /// `first` and `second` each say a type and its member: `Int16 in a`.
    #[error("collection {collection}: column {column} is {first} and {second}, which do not widen to one type (docs/format.md)")]
    TypeConflict {
        collection: String,
        column: String,
        first: String,
        second: String,
    },
    #[error("collection {collection}: categorical {column} is ordered in {ordered_in} but not in {unordered_in}")]
    OrderedConflict {
        collection: String,
        column: String,
        ordered_in: String,
        unordered_in: String,
    },
    #[error("collection {0}: its members share no gene, so its inner join is empty")]
    EmptyInnerJoin(String),
    #[error("collection {collection}: {n_cells} cells, above the {max} a stream can address")]
    TooManyCells {
        collection: String,
        n_cells: u64,
        max: u64,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}
