//! The on-disk cellflight dataset (see `docs/format.md`): writing it
//! atomically, reading its expression matrix zero-copy from a memory map,
//! and verifying it end to end; and collections of datasets served as one.

mod collection;
mod column;
mod commit;
mod error;
mod fault_guard;
mod layout;
mod matrix_reader;
mod matrix_writer;
mod reader;
mod remote;
mod row_check;
mod served;
mod stats;
mod table_file;
mod table_writer;
mod verify;
mod writer;

pub use collection::{
    collection_files, open_collections, read_definition, write_definition, CellColumn, CellSource,
    Collection, CollectionError, CollectionFile, MAX_COLLECTION_CELLS, SOURCE_DATASET,
    STAT_N_MEMBERS,
};
pub use column::Table;
pub use error::StoreError;
pub use layout::{
    CELLS_FILE, CELL_ID, GENES_FILE, GENE_ID, GENE_IDX, MANIFEST_FILE, MATRIX_FILE, OBS_NAME,
    STAT_MEAN, STAT_N_CELLS, STAT_N_GENES, STAT_TOTAL, STAT_VARIANCE, VERSION_METADATA_KEY,
};
pub use matrix_reader::{runs, Matrix};
pub use reader::Dataset;
pub use remote::{
    prune, publish, refuse_published, BlockCache, DataLocation, PublishedVersion, ReadCounters,
    RemoteCatalog, RemoteCatalogConfig, RemoteMatrix, RemoteObject, RemoteReadStats, RemoteStore,
    VersionsRemoved, BLOCK_BYTES,
};
pub use row_check::{CheckedRows, RowCheck};
pub use served::Served;
pub use table_file::TableFile;
pub use verify::{verify, Fault};
pub use writer::{
    CellRows, CsrRows, DatasetDescription, DatasetSpec, DatasetWriter, MatrixSpec, Origin,
    WriteMode, DEFAULT_CELLS_PER_BATCH,
};
