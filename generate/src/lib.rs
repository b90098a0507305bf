//! Synthetic single-cell datasets shaped like Tahoe-100M (100M cells ×
//! 62,710 genes, 14 plates, 50 cell lines, 380 drugs, ~1,500 non-zeros a
//! cell, median non-zero count 1), written as a cellflight dataset and,
//! optionally, as the `.h5ad` anndata would write for the same cells, so that
//! other loaders can be measured on identical data.
//!
//! # The generative model
//!
//! - **Design** ([`design`](crate::design)): cells are stored grouped by plate
//!   (14 near-equal runs), then by drug within a plate (380 near-equal runs,
//!   drug 0 the control `DMSO_TF`). Each (plate, drug) well has one dose of
//!   three, drawn per well, and a sample id naming the well. Each cell's line
//!   is drawn uniformly from 50 (the lines are pooled in every well).
//! - **Genes expressed**: a cell expresses n genes, n log-normal with mean
//!   1,500 and log-spread 0.35, clipped to [200, genes/2]; with fewer genes the
//!   mean is genes/4 (and the floor shrinks with it).
//! - **Which genes**: the cell draws genes until it has n distinct ones
//!   (weighted sampling without replacement). A draw comes 6% of the time
//!   from its cell line's 100 marker genes, 4% from its drug's 40 (the
//!   control has none), 9% evenly from all genes, and otherwise by gene
//!   popularity: Zipf, weight ≈ 1/(rank + 10.5), ranks scattered over the
//!   gene index by a seeded permutation. So a few hundred genes are in
//!   nearly every cell, most genes in few, and cell line and drug are
//!   learnable from expression.
//! - **Counts**: 1 + ⌊s·(U^-½ − 1)⌋ (a discretised Lomax, shape 2), capped at
//!   65,535 so they fit UInt16, with a scale s per gene falling with its
//!   popularity rank from 20.8 to 0.8: about 70% of non-zeros are 1, popular
//!   genes have high counts, and the tail is heavy.
//! - **obs**: `obs_name`, `plate`, `cell_line`, `drug`, `dose`, `sample`
//!   (categoricals with their full category lists), then scanpy's QC columns
//!   `n_genes` and `total_counts`, equal to the row statistics.
//!
//! # Determinism
//!
//! The output is a pure function of (cells, genes, seed): cells are made in
//! chunks of 1,024, each from its own ChaCha8 streams keyed by the seed and
//! the chunk index (see [`rng`](crate::rng)), whatever the number of threads.
//!
//! # Obs-only datasets
//!
//! Without the matrix, labels and `n_genes` are identical to the full
//! dataset's (they come from their own streams), but `total_counts` cannot be
//! summed: it is drawn from a normal approximation of the sum of the cell's
//! counts, calibrated on the first chunk made in full. It follows nearly the
//! same distribution, but is not the full dataset's value.

mod chunk;
mod design;
mod error;
mod gene_set;
mod h5ad_writer;
mod model;
mod obs;
mod pipeline;
mod popularity;
mod rng;
mod scramble;

use std::path::PathBuf;

use arrow_array::RecordBatch;

use cellflight_schemas::{Manifest, ValueType};
use cellflight_store::{
    DatasetDescription, DatasetSpec, DatasetWriter, MatrixSpec, Origin, WriteMode,
    DEFAULT_CELLS_PER_BATCH,
};
use rayon::prelude::*;

pub use error::GenerateError;

use chunk::Generator;
use h5ad_writer::{CsrShape, H5adContents, H5adWriter};
use pipeline::Chunks;

/// Genes of Tahoe-100M's annotation.
pub const DEFAULT_GENES: u64 = 62_710;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// The dataset directory; its file name is the dataset name.
    pub output: PathBuf,
    pub cells: u64,
    pub genes: u64,
    pub seed: u64,
    /// Also write the cells to this `.h5ad`.
    pub h5ad: Option<PathBuf>,
    /// Write obs (and var) only, no expression matrix.
    pub obs_only: bool,
    /// Replace an existing dataset (and `.h5ad`).
    pub replace: bool,
}

impl GenerateOptions {
    /// `cells` Tahoe-shaped cells into `output`, with the default genes and seed.
    pub fn new(output: impl Into<PathBuf>, cells: u64) -> Self {
        Self {
            output: output.into(),
            cells,
            genes: DEFAULT_GENES,
            seed: 0,
            h5ad: None,
            obs_only: false,
            replace: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GenerateSummary {
    /// The published dataset's manifest (cells, genes, non-zeros, version).
    pub manifest: Manifest,
    /// The `.h5ad` written, if one was asked for.
    pub h5ad: Option<PathBuf>,
}

/// Generates the dataset `options` describe; `progress` is called with the
/// number of cells just written, in order, on the calling thread.
pub fn generate(
    options: &GenerateOptions,
    progress: &dyn Fn(u64),
) -> Result<GenerateSummary, GenerateError> {
    let genes = check(options)?;
    let writer =
        DatasetWriter::create(&options.output, dataset_spec(options), write_mode(options))?;
    let generator = Generator::new(options.cells, genes, options.seed, options.obs_only);
    let var = obs::var_batch(genes)?;
    let categoricals = generator.obs_table().categoricals();
    let h5ad = options.h5ad.as_ref().map(|path| {
        let contents = H5adContents {
            shape: matrix_shape(options, &generator),
            obs: generator.obs_table().schema(),
            categoricals: &categoricals,
            var: &var,
        };
        (path, contents)
    });
    let description = DatasetDescription {
        cell_categoricals: categoricals.clone(),
        gene_categoricals: Vec::new(),
        origin: origin(options),
        skipped: Vec::new(),
    };
    let consume = |chunks: Chunks| {
        let h5ad = h5ad
            .map(|(path, contents)| H5adWriter::create(path, &contents))
            .transpose()?;
        write_all(chunks, writer, h5ad, &var, description)
    };
    let make = |index| Ok(generator.chunk(index)?);
    let manifest = pipeline::run(generator.chunks(), make, consume, progress)?;
    Ok(GenerateSummary {
        manifest,
        h5ad: options.h5ad.clone(),
    })
}

/// The matrix's size. An .h5ad's arrays are sized up front, so this counts
/// the non-zeros before any is made (cheap: they come from their own stream).
fn matrix_shape(options: &GenerateOptions, generator: &Generator) -> CsrShape {
    CsrShape {
        cells: options.cells,
        genes: options.genes,
        nnz: (0..generator.chunks())
            .into_par_iter()
            .map(|i| generator.chunk_nnz(i))
            .sum(),
    }
}

/// Checks the options; returns the gene count as the model takes it.
fn check(options: &GenerateOptions) -> Result<u32, GenerateError> {
    if options.cells == 0 {
        return Err(GenerateError::NoCells);
    }
    let genes = u32::try_from(options.genes)
        .ok()
        .filter(|&g| g > 0)
        .ok_or(GenerateError::GeneCount(options.genes))?;
    match &options.h5ad {
        Some(_) if options.obs_only => Err(GenerateError::H5adWithObsOnly),
        Some(path) if !options.replace && path.exists() => {
            Err(GenerateError::H5adExists(path.clone()))
        }
        _ => Ok(genes),
    }
}

fn dataset_spec(options: &GenerateOptions) -> DatasetSpec {
    DatasetSpec {
        n_genes: options.genes,
        matrix: (!options.obs_only).then_some(MatrixSpec {
            value_type: ValueType::UInt16,
            cells_per_batch: DEFAULT_CELLS_PER_BATCH,
        }),
    }
}

fn write_mode(options: &GenerateOptions) -> WriteMode {
    if options.replace {
        WriteMode::Replace
    } else {
        WriteMode::CreateNew
    }
}

fn origin(options: &GenerateOptions) -> Origin {
    Origin {
        source: "generate".into(),
        matrix: "X".into(),
        parameters: Some(serde_json::json!({
            "cells": options.cells,
            "genes": options.genes,
            "seed": options.seed,
            "obs_only": options.obs_only,
        })),
    }
}

/// Appends every chunk to the dataset (and the `.h5ad`), in order, then
/// publishes both; the dataset last, as it is what callers look for.
fn write_all(
    chunks: Chunks,
    mut writer: DatasetWriter,
    mut h5ad: Option<H5adWriter>,
    var: &RecordBatch,
    description: DatasetDescription,
) -> Result<Manifest, GenerateError> {
    for chunk in chunks {
        let chunk = chunk?;
        writer.append(chunk.rows(), &chunk.obs)?;
        if let (Some(h5ad), Some(csr)) = (&mut h5ad, &chunk.matrix) {
            h5ad.append(csr, &chunk.obs)?;
        }
    }
    if let Some(h5ad) = h5ad {
        h5ad.finish()?;
    }
    Ok(writer.finish(var, description)?)
}
