//! Errors: every message names the file, the object inside it and the problem,
//! so a failed ingest can be acted on without opening the file by hand.

use std::fmt::Display;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum H5adError {
    /// The file could not be read at all (missing, unreadable).
    #[error("{}: cannot open: {reason}", file.display())]
    Open { file: PathBuf, reason: String },
    /// The file is not HDF5.
    #[error("{}: not an HDF5 file: {reason}", file.display())]
    NotHdf5 { file: PathBuf, reason: String },
    /// HDF5, but not laid out as AnnData.
    #[error("{}: not an AnnData file: {reason}", file.display())]
    NotAnnData { file: PathBuf, reason: String },
    /// An object or attribute AnnData requires is absent.
    #[error("{}: {object}: missing {what}", file.display())]
    Missing {
        file: PathBuf,
        object: String,
        what: String,
    },
    /// The object uses an encoding or a type this reader does not handle.
    #[error("{}: {object}: unsupported: {what}", file.display())]
    Unsupported {
        file: PathBuf,
        object: String,
        what: String,
    },
    /// The object is present but its content contradicts the AnnData format
    /// (ragged indptr, length mismatch, bad shape ...).
    #[error("{}: {object}: invalid: {problem}", file.display())]
    Invalid {
        file: PathBuf,
        object: String,
        problem: String,
    },
    /// The HDF5 library failed to read the object.
    #[error("{}: {object}: read failed: {reason}", file.display())]
    Read {
        file: PathBuf,
        object: String,
        reason: String,
    },
    /// The caller asked for something the object cannot give: a range past its
    /// end, or a sparse read of a dense matrix.
    #[error("{}: {object}: bad request: {problem}", file.display())]
    Request {
        file: PathBuf,
        object: String,
        problem: String,
    },
}

/// Where an error happens: the file and an object path inside it. Cheap to
/// clone so every reader can carry its own.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    file: Arc<PathBuf>,
    object: String,
}

impl Loc {
    pub(crate) fn new(file: Arc<PathBuf>, object: impl Into<String>) -> Self {
        Loc {
            file,
            object: object.into(),
        }
    }

    /// The location of `name` under this object ("obs" + "cell_type" = "obs/cell_type").
    pub(crate) fn child(&self, name: &str) -> Loc {
        let object = if self.object.is_empty() || self.object == "/" {
            name.to_string()
        } else {
            format!("{}/{name}", self.object)
        };
        Loc::new(self.file.clone(), object)
    }

    pub(crate) fn object(&self) -> &str {
        &self.object
    }

    pub(crate) fn missing(&self, what: impl Display) -> H5adError {
        H5adError::Missing {
            file: self.file.to_path_buf(),
            object: self.object.clone(),
            what: what.to_string(),
        }
    }

    pub(crate) fn unsupported(&self, what: impl Display) -> H5adError {
        H5adError::Unsupported {
            file: self.file.to_path_buf(),
            object: self.object.clone(),
            what: what.to_string(),
        }
    }

    pub(crate) fn invalid(&self, problem: impl Display) -> H5adError {
        H5adError::Invalid {
            file: self.file.to_path_buf(),
            object: self.object.clone(),
            problem: problem.to_string(),
        }
    }

    pub(crate) fn read(&self, reason: impl Display) -> H5adError {
        H5adError::Read {
            file: self.file.to_path_buf(),
            object: self.object.clone(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn request(&self, problem: impl Display) -> H5adError {
        H5adError::Request {
            file: self.file.to_path_buf(),
            object: self.object.clone(),
            problem: problem.to_string(),
        }
    }

    /// Runs `read` of this object, whose HDF5 parsing may panic on a corrupt
    /// file (rust-hdf5 0.7.9 overflows on sizes such a file declares): the
    /// panic becomes a Read error naming the object, not a crash of ingest.
    pub(crate) fn contained<T>(
        &self,
        read: impl FnOnce() -> Result<T, H5adError>,
    ) -> Result<T, H5adError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(self.read(format!(
                "the HDF5 reader failed on corrupt data ({message})"
            )))
        })
    }

    /// Refuses a range that is reversed or runs past `len`.
    pub(crate) fn check_range(
        &self,
        range: &std::ops::Range<u64>,
        len: u64,
    ) -> Result<(), H5adError> {
        if range.start > range.end || range.end > len {
            return Err(self.request(format!(
                "range {}..{} is outside 0..{len}",
                range.start, range.end
            )));
        }
        Ok(())
    }
}
