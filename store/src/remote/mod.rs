//! Datasets published to an object store (S3, GCS, Azure) and read from
//! it: where they are (`location`), how versions are laid out and published
//! (`publish`, `catalog`), and how a matrix is read by byte ranges
//! (`matrix`, `object`) through a bounded on-disk cache (`block_cache`).
//!
//! The layout under a prefix (docs/format.md "Object storage"):
//! `NAME/v/VERSION/{manifest.json, cells.parquet, genes.parquet,
//! matrix.arrow}` for each version, and `NAME/manifest.json`, a copy of the
//! current version's manifest, written last: object stores have no rename,
//! so a version is never visible before all of its files are.

mod block_cache;
mod catalog;
mod io;
mod location;
mod matrix;
mod object;
mod publish;

pub use block_cache::BlockCache;
pub use catalog::{RemoteCatalog, RemoteCatalogConfig, RemoteReadStats};
pub use location::{DataLocation, RemoteStore};
pub use matrix::RemoteMatrix;
pub use object::{ReadCounters, RemoteObject, BLOCK_BYTES};
pub use publish::{prune, publish, refuse_published, PublishedVersion, VersionsRemoved};

/// The directory of a dataset's versions under its name.
const VERSIONS_DIR: &str = "v";

/// A version as it appears in object names: what ingest makes
/// (`20261125T091527Z-872085ecc9f88ad3`); anything else (from a ticket, say)
/// is refused before it becomes part of a name.
fn check_version(dataset: &str, version: &str) -> Result<(), crate::StoreError> {
    let plain = !version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match plain {
        true => Ok(()),
        false => Err(crate::StoreError::UnknownVersion {
            dataset: dataset.to_owned(),
            version: version.chars().take(80).collect(),
        }),
    }
}
