//! The same cells as an `.h5ad`, laid out as anndata 0.11/0.12 writes one
//! with its defaults (`adata.write_h5ad(path)`, h5py's defaults underneath),
//! so peer loaders can be measured on identical data:
//!
//! - the file format h5py asks libhdf5 for by default (the earliest:
//!   version-0 superblock, symbol-table groups);
//! - root: `encoding-type` "anndata" 0.1.0;
//! - `X`: CSR, `data` float32, `indices`/`indptr` int32 (int64 once the
//!   matrix needs it, as scipy decides), resizable and chunked as h5py
//!   guesses, uncompressed (see [`csr`]);
//! - `obs`, `var`: dataframes with contiguous columns (see [`frame`]);
//! - empty `layers`, `obsm`, `obsp`, `varm`, `varp`, `uns` dicts.
//!
//! Everything is streamed: obs columns are created at full length and filled
//! chunk by chunk, `X` is appended to. The file is written beside the target
//! under a hidden name and renamed into place once complete.

mod csr;
mod encoding;
mod frame;

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use cellflight_schemas::Categorical;
use rust_hdf5::{H5File, Hdf5Error, LibverBound};

pub(crate) use csr::CsrShape;

use crate::chunk::Csr;
use crate::error::GenerateError;
use csr::CsrWriter;
use encoding::mark_group;
use frame::FrameWriter;

pub(crate) struct H5adWriter {
    target: PathBuf,
    partial: PartialFile,
    file: H5File,
    x: CsrWriter,
    obs: FrameWriter,
}

/// What the file holds besides the rows: their size and obs columns, and var.
pub(crate) struct H5adContents<'a> {
    pub shape: CsrShape,
    pub obs: &'a Schema,
    pub categoricals: &'a [Categorical],
    pub var: &'a RecordBatch,
}

impl H5adWriter {
    pub(crate) fn create(
        target: &Path,
        contents: &H5adContents<'_>,
    ) -> Result<Self, GenerateError> {
        let partial = PartialFile {
            path: partial_path(target),
            keep: false,
        };
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| GenerateError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        let error = hdf5_error(target);
        let file = H5File::options()
            .libver(LibverBound::Earliest)
            .create(&partial.path)
            .map_err(&error)?;
        let (x, obs) = layout(&file, contents).map_err(&error)?;
        Ok(Self {
            target: target.to_owned(),
            partial,
            file,
            x,
            obs,
        })
    }

    /// Appends the next cells: their rows of `X` and of obs.
    pub(crate) fn append(&mut self, csr: &Csr, obs: &RecordBatch) -> Result<(), GenerateError> {
        let error = hdf5_error(&self.target);
        self.x.append(csr).map_err(&error)?;
        self.obs.append(obs).map_err(&error)
    }

    /// Closes the file and moves it into place.
    pub(crate) fn finish(mut self) -> Result<(), GenerateError> {
        self.file.close().map_err(hdf5_error(&self.target))?;
        std::fs::rename(&self.partial.path, &self.target).map_err(|source| GenerateError::Io {
            path: self.target.clone(),
            source,
        })?;
        self.partial.keep = true;
        Ok(())
    }
}

/// Creates every element; only `X` and obs still need their rows.
fn layout(
    file: &H5File,
    contents: &H5adContents<'_>,
) -> Result<(CsrWriter, FrameWriter), Hdf5Error> {
    file.set_attr_string("encoding-type", "anndata")?;
    file.set_attr_string("encoding-version", "0.1.0")?;
    let root = file.root_group();
    let x = CsrWriter::create(&root, contents.shape)?;
    let rows = contents.shape.cells as usize;
    let obs = FrameWriter::create(&root, "obs", contents.obs, rows, contents.categoricals)?;
    let var = contents.var;
    FrameWriter::create(&root, "var", &var.schema(), var.num_rows(), &[])?.append(var)?;
    for name in ["layers", "obsm", "obsp", "uns", "varm", "varp"] {
        mark_group(&root.create_group(name)?, "dict", "0.1.0")?;
    }
    Ok((x, obs))
}

/// `.NAME.partial` beside `target`.
fn partial_path(target: &Path) -> PathBuf {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    target.with_file_name(format!(".{name}.partial"))
}

fn hdf5_error(path: &Path) -> impl Fn(Hdf5Error) -> GenerateError + '_ {
    move |source| GenerateError::Hdf5 {
        path: path.to_owned(),
        source,
    }
}

/// The file being written: removed if the writer is dropped unfinished.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a failed generate should not leave gigabytes behind.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
