//! [`Dataset::open`]: one consistent version of a dataset, even while
//! `ingest --force` replaces it.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cellflight_schemas::Manifest;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::ParquetMetaDataReader;

use crate::matrix_reader::{Matrix, VersionMismatch};
use crate::remote::RemoteMatrix;
use crate::table_file::TableFile;
use crate::{
    StoreError, CELLS_FILE, GENES_FILE, MANIFEST_FILE, STAT_N_GENES, VERSION_METADATA_KEY,
};

/// An opened dataset. Every file handle it holds belongs to the version its
/// manifest names, and stays readable after the dataset is replaced.
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    matrix: Option<MatrixFile>,
    cells: TableFile,
    genes: TableFile,
}

impl std::fmt::Debug for Dataset {
    /// Which dataset, at which version, from where: its handles say no more.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("name", &self.manifest.name.as_str())
            .field("version", &self.manifest.version)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Where a dataset's rows are read from.
#[derive(Debug)]
enum MatrixFile {
    /// A local file, memory-mapped.
    Mapped(Box<Matrix>),
    /// An object store's object, read by byte ranges.
    Remote(Arc<RemoteMatrix>),
}

/// A replacement can land between reading the manifest and opening the
/// files; each retry starts over from the new manifest.
const OPEN_ATTEMPTS: usize = 5;

impl Dataset {
    /// A file whose version differs from the manifest's twice in a row,
    /// under the same manifest, is not a race but a damaged dataset.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mut previous = None;
        for _ in 0..OPEN_ATTEMPTS {
            match Self::open_once(dir)? {
                Ok(dataset) => return Ok(dataset),
                Err(mismatch) if previous.as_ref() == Some(&mismatch) => {
                    let (manifest_version, file) = mismatch;
                    return Err(StoreError::VersionMismatch {
                        file: file.file,
                        manifest: manifest_version,
                        found: file.found.unwrap_or_else(|| "none".into()),
                    });
                }
                Err(mismatch) => previous = Some(mismatch),
            }
        }
        Err(StoreError::KeptChanging(dir.to_owned()))
    }

    /// Opens every file, or says which one belongs to another version than
    /// the manifest read (whose version comes with it).
    fn open_once(dir: &Path) -> Result<Result<Self, (String, VersionMismatch)>, StoreError> {
        let manifest = read_manifest(dir)?;
        let version = manifest.version.as_str();
        let mismatch = |file| Ok(Err((version.to_owned(), file)));
        let cells = match open_table(&dir.join(&manifest.cells.file), version)? {
            Ok(file) => file,
            Err(other) => return mismatch(other),
        };
        let genes = match open_table(&dir.join(&manifest.genes.file), version)? {
            Ok(file) => file,
            Err(other) => return mismatch(other),
        };
        let matrix = match &manifest.matrix {
            None => None,
            Some(layout) => {
                let path = dir.join(&layout.file);
                match Matrix::open(&path, version, layout.cells_per_batch, manifest.n_cells)? {
                    Ok(matrix) => Some(MatrixFile::Mapped(Box::new(matrix))),
                    Err(other) => return mismatch(other),
                }
            }
        };
        Ok(Ok(Self {
            dir: dir.to_owned(),
            manifest,
            matrix,
            cells,
            genes,
        }))
    }

    /// A version copied from an object store: its manifest and tables in
    /// `dir` (copies never change, so no retries), its rows in `matrix`.
    pub(crate) fn open_copy(
        dir: &Path,
        matrix: Option<Arc<RemoteMatrix>>,
    ) -> Result<Self, StoreError> {
        let manifest = read_manifest(dir)?;
        let version = manifest.version.as_str();
        let table = |file: &str| match open_table(&dir.join(file), version)? {
            Ok(table) => Ok(table),
            Err(other) => Err(StoreError::VersionMismatch {
                file: other.file,
                manifest: version.to_owned(),
                found: other.found.unwrap_or_else(|| "none".into()),
            }),
        };
        Ok(Self {
            dir: dir.to_owned(),
            cells: table(CELLS_FILE)?,
            genes: table(GENES_FILE)?,
            matrix: matrix.map(MatrixFile::Remote),
            manifest,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The memory-mapped matrix of a local dataset; `None` for an obs-only
    /// dataset or one read from an object store.
    pub fn matrix(&self) -> Option<&Matrix> {
        match &self.matrix {
            Some(MatrixFile::Mapped(matrix)) => Some(matrix),
            _ => None,
        }
    }

    /// The matrix of a dataset read from an object store.
    pub fn remote_matrix(&self) -> Option<&Arc<RemoteMatrix>> {
        match &self.matrix {
            Some(MatrixFile::Remote(matrix)) => Some(matrix),
            _ => None,
        }
    }

    /// `cells.parquet` (obs) of this version, open.
    pub fn cells_table(&self) -> &TableFile {
        &self.cells
    }

    /// `genes.parquet` (var) of this version, open.
    pub fn genes_table(&self) -> &TableFile {
        &self.genes
    }

    /// A reader of `cells.parquet` of this version.
    pub fn cells(&self) -> ParquetRecordBatchReaderBuilder<TableFile> {
        self.cells.reader()
    }

    /// The most genes stored for one cell (its `stat_n_genes`), from the
    /// statistics in `cells.parquet`'s footer: what bounds a cell's entries
    /// in a stream. `None` when the footer lacks them.
    pub fn largest_cell_genes(&self) -> Option<u64> {
        self.cells.largest_u32(STAT_N_GENES).map(u64::from)
    }

    /// A reader of `genes.parquet` of this version.
    pub fn genes(&self) -> ParquetRecordBatchReaderBuilder<TableFile> {
        self.genes.reader()
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest, StoreError> {
    let path = dir.join(MANIFEST_FILE);
    let text = match std::fs::read_to_string(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && dir.is_dir() => {
            return Err(StoreError::NotADataset(dir.to_owned()))
        }
        other => other.map_err(StoreError::io(&path))?,
    };
    Manifest::from_json(&text).map_err(|source| StoreError::Manifest { path, source })
}

fn open_table(
    path: &Path,
    version: &str,
) -> Result<Result<TableFile, VersionMismatch>, StoreError> {
    let file = File::open(path).map_err(StoreError::io(path))?;
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .map_err(StoreError::parquet(path))?;
    let stamped = metadata
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .find(|kv| kv.key == VERSION_METADATA_KEY)
        .and_then(|kv| kv.value.clone());
    Ok(if stamped.as_deref() == Some(version) {
        Ok(TableFile::new(file, metadata).map_err(StoreError::parquet(path))?)
    } else {
        Err(VersionMismatch {
            file: path.to_owned(),
            found: stamped,
        })
    })
}
