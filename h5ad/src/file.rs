//! The open .h5ad file: checks it is AnnData, finds the chosen matrix, the
//! obs and var tables, and lists what the dataset will not hold.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rust_hdf5::H5File;

use crate::attrs::Meta;
use crate::dataframe::DataFrame;
use crate::error::{H5adError, Loc};
use crate::matrix::{MatrixEncoding, MatrixSelection, MatrixSource};
use crate::skipped;
use crate::tree::{children, node, Node};

/// The parts every AnnData file has; a legacy file without the root
/// `encoding-type` attribute is recognised by them.
const ANNDATA_PARTS: [&str; 3] = ["X", "obs", "var"];

/// An open .h5ad file. Reads go through rust-hdf5 (data, as hyperslabs) and
/// hdf5-reader (attributes and string heaps); see `attrs.rs` for why two.
pub struct H5ad {
    path: Arc<PathBuf>,
    file: H5File,
    meta: Meta,
}

impl fmt::Debug for H5ad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("H5ad")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl H5ad {
    /// Opens and checks it is HDF5 and AnnData (root attribute
    /// encoding-type == "anndata", or for legacy files X, obs and var present).
    pub fn open(path: &Path) -> Result<H5ad, H5adError> {
        let path = Arc::new(path.to_path_buf());
        Loc::new(path.clone(), "/").contained(|| Self::open_checked(path))
    }

    fn open_checked(path: Arc<PathBuf>) -> Result<H5ad, H5adError> {
        let meta = Meta::open(&path).map_err(|e| open_error(&path, e))?;
        let file = H5File::options()
            .best_effort_locking()
            .open(path.as_path())
            .map_err(|e| H5adError::Open {
                file: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        let h5ad = H5ad { path, file, meta };
        h5ad.check_anndata()?;
        Ok(h5ad)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The expression matrix chosen: X, raw/X, or layers/NAME.
    pub fn matrix(&self, which: &MatrixSelection) -> Result<MatrixSource, H5adError> {
        let loc = self.loc(&which.path());
        loc.clone()
            .contained(|| match node(&self.file, loc.object()) {
                Node::Dataset => self.open_dense(loc),
                Node::Group => self.open_sparse(loc),
                Node::Absent => Err(self.missing_matrix(which, loc)),
            })
    }

    /// obs, whose first output column is "obs_name" (the obs index).
    pub fn obs(&self) -> Result<DataFrame, H5adError> {
        let loc = self.loc("obs");
        loc.contained(|| DataFrame::open(&self.file, &self.meta, loc.clone(), "obs_name"))
    }

    /// var (raw/var when `which` is Raw), whose first output column is
    /// "gene_id" (the var index, as is).
    pub fn var(&self, which: &MatrixSelection) -> Result<DataFrame, H5adError> {
        let path = match which {
            MatrixSelection::Raw => "raw/var",
            _ => "var",
        };
        let loc = self.loc(path);
        loc.contained(|| DataFrame::open(&self.file, &self.meta, loc.clone(), "gene_id"))
    }

    /// Every top-level part of the file the dataset will not hold, as paths
    /// ("obsm/X_pca", "uns", "layers/counts", "raw", "X" ...). Empty groups
    /// are not listed.
    pub fn skipped(&self, which: &MatrixSelection) -> Vec<String> {
        skipped::list(&self.file, which)
    }

    fn loc(&self, object: &str) -> Loc {
        Loc::new(self.path.clone(), object)
    }

    fn check_anndata(&self) -> Result<(), H5adError> {
        let root = self.meta.attrs(&self.loc(""))?;
        match root.string("encoding-type")?.as_deref() {
            Some("anndata") => Ok(()),
            Some(other) => Err(self.not_anndata(format!("root encoding-type is '{other}'"))),
            None => self.check_legacy_parts(),
        }
    }

    fn check_legacy_parts(&self) -> Result<(), H5adError> {
        let absent: Vec<&str> = ANNDATA_PARTS
            .into_iter()
            .filter(|part| node(&self.file, part) == Node::Absent)
            .collect();
        if absent.is_empty() {
            return Ok(());
        }
        Err(self.not_anndata(format!(
            "no root encoding-type attribute and no {}",
            absent.join(", ")
        )))
    }

    fn not_anndata(&self, reason: String) -> H5adError {
        H5adError::NotAnnData {
            file: self.path.to_path_buf(),
            reason,
        }
    }

    fn open_dense(&self, loc: Loc) -> Result<MatrixSource, H5adError> {
        match self.meta.attrs(&loc)?.string("encoding-type")?.as_deref() {
            Some("array") | None => MatrixSource::open_dense(&self.file, loc),
            Some(other) => Err(loc.unsupported(format!("encoding-type '{other}' on a dataset"))),
        }
    }

    fn open_sparse(&self, loc: Loc) -> Result<MatrixSource, H5adError> {
        let attrs = self.meta.attrs(&loc)?;
        let encoding = match attrs.string("encoding-type")? {
            Some(encoding) => encoding,
            // anndata 0.6 marked sparse groups with h5sparse_format = "csr"/"csc".
            None => match attrs.string("h5sparse_format")? {
                Some(format) => format!("{format}_matrix"),
                None => return Err(loc.missing("attribute 'encoding-type'")),
            },
        };
        let encoding = match encoding.as_str() {
            "csr_matrix" => MatrixEncoding::Csr,
            "csc_matrix" => MatrixEncoding::Csc,
            other => return Err(loc.unsupported(format!("encoding-type '{other}'"))),
        };
        MatrixSource::open_sparse(&self.file, &self.meta, loc, encoding)
    }

    /// A missing matrix; for a layer, the message lists the layers there are.
    fn missing_matrix(&self, which: &MatrixSelection, loc: Loc) -> H5adError {
        match which {
            MatrixSelection::Layer(name) => {
                let layers = children(&self.file, "layers");
                let available = if layers.is_empty() {
                    "the file has no layers".to_string()
                } else {
                    format!("available: {}", layers.join(", "))
                };
                loc.missing(format!("layer '{name}' ({available})"))
            }
            _ => loc.missing("matrix"),
        }
    }
}

/// hdf5-reader opens first, so its error says whether the file is HDF5 at all.
fn open_error(path: &Path, error: hdf5_reader::error::Error) -> H5adError {
    let file = path.to_path_buf();
    match error {
        hdf5_reader::error::Error::InvalidMagic => H5adError::NotHdf5 {
            file,
            reason: "no HDF5 signature".to_string(),
        },
        other => H5adError::Open {
            file,
            reason: other.to_string(),
        },
    }
}
