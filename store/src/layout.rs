//! Names fixed by the format: files in a dataset directory and the columns
//! cellflight adds to obs and var.

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MATRIX_FILE: &str = "matrix.arrow";
pub const CELLS_FILE: &str = "cells.parquet";
pub const GENES_FILE: &str = "genes.parquet";

/// Key of the dataset version in the matrix's Arrow schema metadata and in
/// the Parquet key-value metadata: a reader that finds it differing from the
/// manifest's has raced a replacement.
pub const VERSION_METADATA_KEY: &str = "cellflight.version";

pub const CELL_ID: &str = "cell_id";
pub const OBS_NAME: &str = "obs_name";
pub const STAT_N_GENES: &str = "stat_n_genes";
pub const STAT_TOTAL: &str = "stat_total";

pub const GENE_IDX: &str = "gene_idx";
pub const GENE_ID: &str = "gene_id";
pub const STAT_N_CELLS: &str = "stat_n_cells";
pub const STAT_MEAN: &str = "stat_mean";
pub const STAT_VARIANCE: &str = "stat_variance";
