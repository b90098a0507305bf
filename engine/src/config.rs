//! What an engine is built from: plain values, whoever reads them (the
//! `cellflight serve` flags, a test, an embedding program).

use std::path::{Path, PathBuf};
use std::time::Duration;

use cellflight_sql::SqlLimits;
use cellflight_store::{DataLocation, RemoteCatalogConfig};

#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// A dataset directory, a directory of them, or an object store
    /// prefix datasets are published under.
    pub data: DataLocation,
    /// Where datasets read from an object store are cached, and how much.
    pub remote_cache: RemoteCatalogConfig,
    /// Where `NAME.vocabulary.parquet` token tables are; none: `data` when
    /// it is a directory of datasets (a single dataset directory has no
    /// vocabularies unless this is given).
    pub vocabularies: Option<PathBuf>,
    /// The dataset reached without a name (and by unqualified table names
    /// in SQL); none: the only dataset, when `data` holds exactly one.
    pub default_dataset: Option<String>,
    pub sql: SqlLimits,
    /// Where large sorts and joins spill; none: no spilling.
    pub spill_dir: Option<PathBuf>,
    /// Memory for cached cohorts and gene spaces (4 bytes a cell; 12 with
    /// sampling weights).
    pub cohort_cache_bytes: usize,
    /// Memory for whole metadata columns held to attach obs columns to
    /// minibatches and to resolve gene names.
    pub column_cache_bytes: usize,
}

impl EngineConfig {
    /// The datasets under the local directory `data`, with the defaults of
    /// `cellflight serve`.
    pub fn new(data: impl AsRef<Path>) -> Self {
        Self::over(DataLocation::Local(data.as_ref().to_owned()))
    }

    /// The datasets at `data`, with the defaults of `cellflight serve` (a
    /// remote store's cache in the system's temporary directory).
    pub fn over(data: DataLocation) -> Self {
        Self {
            data,
            remote_cache: RemoteCatalogConfig {
                cache_dir: std::env::temp_dir().join("cellflight"),
                cache_bytes: 10 << 30,
            },
            vocabularies: None,
            default_dataset: None,
            sql: SqlLimits {
                memory_bytes: 2 << 30,
                query_memory_bytes: 1 << 30,
                timeout: Duration::from_secs(60),
                max_rows: 10_000_000,
                planning_threads: 4,
            },
            spill_dir: None,
            cohort_cache_bytes: 1 << 30,
            column_cache_bytes: 2 << 30,
        }
    }
}
