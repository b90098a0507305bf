//! [`DatasetWriter`]: streams cells (expression rows and obs rows together)
//! into a hidden staging directory, then publishes it atomically.

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{new_null_array, ArrayRef, Float64Array, RecordBatch, UInt32Array, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use cellflight_schemas::{
    Categorical, DatasetName, Manifest, MatrixLayout, Provenance, TableLayout, ValueType,
    FORMAT_NAME, FORMAT_VERSION,
};
use rand::Rng;

use crate::commit::{parent_dir, StagingDir};
use crate::matrix_writer::MatrixWriter;
use crate::row_check::{CheckedRows, RowCheck};
use crate::stats::GeneStats;
use crate::table_writer::{Framing, TableWriter};
use crate::*;

/// Cells per stored record batch: big enough that batch overheads vanish,
/// small enough that decoding one batch to read a few cells is cheap.
pub const DEFAULT_CELLS_PER_BATCH: u32 = 1024;

/// Consecutive cells in compressed sparse row form.
#[derive(Debug, Clone, Copy)]
pub struct CsrRows<'a> {
    /// One offset per cell plus one, into `indices` and `values`; need not start at 0.
    pub indptr: &'a [u64],
    /// Gene positions, strictly increasing within a cell.
    pub indices: &'a [u32],
    /// Values; zeros are dropped, everything else is stored exactly.
    pub values: &'a [f64],
}

/// What the writer learns about the next cells.
#[derive(Debug, Clone, Copy)]
pub enum CellRows<'a> {
    Expression(CsrRows<'a>),
    /// For an obs-only dataset: the per-cell statistics, with no matrix.
    StatisticsOnly {
        n_genes: &'a [u32],
        totals: &'a [f64],
    },
}

#[derive(Debug, Clone, Copy)]
pub struct MatrixSpec {
    pub value_type: ValueType,
    pub cells_per_batch: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    pub n_genes: u64,
    /// `None` writes an obs-only dataset: metadata for SQL, no matrix.
    pub matrix: Option<MatrixSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    CreateNew,
    Replace,
}

/// Where the data came from; the writer adds the time and the tool version.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: String,
    pub matrix: String,
    pub parameters: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct DatasetDescription {
    pub cell_categoricals: Vec<Categorical>,
    pub gene_categoricals: Vec<Categorical>,
    pub origin: Origin,
    pub skipped: Vec<String>,
}

pub struct DatasetWriter {
    target: PathBuf,
    name: DatasetName,
    mode: WriteMode,
    staging: StagingDir,
    version: String,
    n_genes: u64,
    value_type: Option<ValueType>,
    matrix: Option<MatrixWriter>,
    cells: TableWriter,
    gene_stats: GeneStats,
    nnz: u64,
}

impl fmt::Debug for DatasetWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatasetWriter")
            .field("target", &self.target)
            .field("version", &self.version)
            .field("cells", &self.cells.rows())
            .field("nnz", &self.nnz)
            .finish_non_exhaustive()
    }
}

impl DatasetWriter {
    /// Starts a dataset at `target`, whose file name is the dataset name.
    pub fn create(target: &Path, spec: DatasetSpec, mode: WriteMode) -> Result<Self, StoreError> {
        let name = dataset_name(target)?;
        if mode == WriteMode::CreateNew && target.exists() {
            return Err(StoreError::AlreadyExists(target.to_owned()));
        }
        if spec.n_genes > u64::from(u32::MAX) {
            return Err(StoreError::InvalidInput(format!(
                "{} genes is more than the format's limit of 2^32 - 1",
                spec.n_genes
            )));
        }
        let version = new_version();
        let parent = parent_dir(target);
        std::fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
        let staging = StagingDir::create(parent.join(format!(".{name}.partial-{version}")))?;
        let matrix = match spec.matrix {
            Some(m) if m.cells_per_batch == 0 => {
                return Err(StoreError::InvalidInput("cells_per_batch is 0".into()))
            }
            Some(m) => Some(MatrixWriter::create(
                &staging.path().join(MATRIX_FILE),
                spec.n_genes,
                m.value_type,
                m.cells_per_batch,
                &version,
            )?),
            None => None,
        };
        let cells = TableWriter::new(&staging.path().join(CELLS_FILE), cells_framing(), &version);
        Ok(Self {
            target: target.to_owned(),
            name,
            mode,
            staging,
            version,
            n_genes: spec.n_genes,
            value_type: spec.matrix.map(|m| m.value_type),
            matrix,
            cells,
            gene_stats: GeneStats::new(spec.n_genes as usize),
            nnz: 0,
        })
    }

    /// The version this ingest will publish.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The hidden directory being written; scratch files may go here too.
    pub fn staging_dir(&self) -> &Path {
        self.staging.path()
    }

    /// Appends the next cells: their expression rows and their `obs` rows.
    pub fn append(&mut self, rows: CellRows<'_>, obs: &RecordBatch) -> Result<(), StoreError> {
        match (rows, self.matrix.is_some()) {
            (CellRows::Expression(csr), true) => {
                let checked = self.row_check().check(csr, self.cells.rows())?;
                self.append_checked(&checked, obs)
            }
            (CellRows::StatisticsOnly { n_genes, totals }, false) => {
                check_same_len("statistics", n_genes.len(), totals.len())?;
                self.write_cells(n_genes, totals, obs)
            }
            (CellRows::Expression(_), false) => Err(expression_without_matrix()),
            (CellRows::StatisticsOnly { .. }, true) => Err(StoreError::InvalidInput(
                "statistics without expression rows given to a dataset with a matrix".into(),
            )),
        }
    }

    /// What expression rows must hold for this dataset: checking them
    /// ([`RowCheck::check`]) is the part of an append that may run on
    /// another thread.
    pub fn row_check(&self) -> RowCheck {
        RowCheck {
            n_genes: self.n_genes,
            value_type: self.value_type,
        }
    }

    /// Appends rows checked by this dataset's [`RowCheck`] as its next
    /// cells, with their `obs` rows.
    pub fn append_checked(
        &mut self,
        rows: &CheckedRows,
        obs: &RecordBatch,
    ) -> Result<(), StoreError> {
        if rows.check != self.row_check() {
            return Err(StoreError::InvalidInput(
                "rows checked for another dataset's genes or value type".into(),
            ));
        }
        if rows.first_cell != self.cells.rows() {
            return Err(StoreError::InvalidInput(format!(
                "rows checked as cells from {} appended as cells from {}",
                rows.first_cell,
                self.cells.rows()
            )));
        }
        check_same_len("obs", obs.num_rows(), rows.cells())?;
        let matrix = self.matrix.as_mut().ok_or_else(expression_without_matrix)?;
        for (&gene, &value) in rows.indices.iter().zip(&rows.values) {
            self.gene_stats.add(gene as usize, value);
        }
        for bounds in rows.indptr.windows(2) {
            let range = bounds[0]..bounds[1];
            matrix.push_cell(&rows.indices[range.clone()], &rows.values[range])?;
        }
        self.nnz += rows.indices.len() as u64;
        self.write_cells(&rows.n_genes, &rows.totals, obs)
    }

    /// The cells table's rows of the next cells: ids, obs and statistics.
    fn write_cells(
        &mut self,
        n_genes: &[u32],
        totals: &[f64],
        obs: &RecordBatch,
    ) -> Result<(), StoreError> {
        check_same_len("obs", obs.num_rows(), n_genes.len())?;
        let first_cell = self.cells.rows();
        let ids = first_cell..first_cell + n_genes.len() as u64;
        let stats: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from(n_genes.to_vec())),
            Arc::new(Float64Array::from(totals.to_vec())),
        ];
        self.cells.write(id_array(ids), obs, stats)
    }

    /// Writes the genes table and the manifest, then publishes the dataset.
    pub fn finish(
        self,
        genes: &RecordBatch,
        description: DatasetDescription,
    ) -> Result<Manifest, StoreError> {
        check_same_len("genes", genes.num_rows(), self.n_genes as usize)?;
        let dir = self.staging.path();
        let n_cells = self.cells.rows();
        let gene_stats = self.matrix.is_some().then_some(&self.gene_stats);
        let matrix = match self.matrix {
            Some(writer) => Some(finish_matrix(writer, &dir.join(MATRIX_FILE))?),
            None => None,
        };
        sync(self.cells.finish(obs_name_only())?, &dir.join(CELLS_FILE))?;
        write_genes(
            &dir.join(GENES_FILE),
            genes,
            gene_stats,
            n_cells,
            &self.version,
        )?;
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            name: self.name,
            version: self.version,
            n_cells,
            n_genes: self.n_genes,
            nnz: self.nnz,
            matrix,
            cells: TableLayout {
                file: CELLS_FILE.into(),
                n_rows: n_cells,
                categoricals: description.cell_categoricals,
            },
            genes: TableLayout {
                file: GENES_FILE.into(),
                n_rows: self.n_genes,
                categoricals: description.gene_categoricals,
            },
            provenance: provenance(description.origin),
            skipped: description.skipped,
        };
        write_manifest(&dir.join(MANIFEST_FILE), &manifest)?;
        self.staging.publish(&self.target, self.mode)?;
        Ok(manifest)
    }
}

fn expression_without_matrix() -> StoreError {
    StoreError::InvalidInput("expression rows given to an obs-only dataset".into())
}

fn finish_matrix(writer: MatrixWriter, path: &Path) -> Result<MatrixLayout, StoreError> {
    let (cells_per_batch, index_type, value_type) = (
        writer.cells_per_batch(),
        writer.index_type(),
        writer.value_type(),
    );
    let (n_batches, file) = writer.finish()?;
    sync(file, path)?;
    Ok(MatrixLayout {
        file: MATRIX_FILE.into(),
        index_type,
        value_type,
        cells_per_batch,
        n_batches,
    })
}

/// `gene_stats` is `None` for an obs-only dataset: its statistics are null.
fn write_genes(
    path: &Path,
    genes: &RecordBatch,
    gene_stats: Option<&GeneStats>,
    n_cells: u64,
    version: &str,
) -> Result<(), StoreError> {
    let n_genes = genes.num_rows();
    let stats: Vec<ArrayRef> = match gene_stats {
        Some(stats) => vec![
            Arc::new(UInt64Array::from(stats.n_cells())),
            Arc::new(Float64Array::from(stats.means(n_cells))),
            Arc::new(Float64Array::from(stats.variances(n_cells))),
        ],
        None => genes_framing()
            .stats
            .iter()
            .map(|f| new_null_array(f.data_type(), n_genes))
            .collect(),
    };
    let ids: ArrayRef = Arc::new(UInt32Array::from_iter_values(0..n_genes as u32));
    let mut table = TableWriter::new(path, genes_framing(), version);
    table.write(ids, genes, stats)?;
    sync(table.finish(genes.schema())?, path)
}

fn provenance(origin: Origin) -> Provenance {
    Provenance {
        source: origin.source,
        matrix: origin.matrix,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool: concat!("cellflight ", env!("CARGO_PKG_VERSION")).into(),
        parameters: origin.parameters,
    }
}

fn write_manifest(path: &Path, manifest: &Manifest) -> Result<(), StoreError> {
    std::fs::write(path, manifest.to_json()).map_err(StoreError::io(path))?;
    sync(File::open(path).map_err(StoreError::io(path))?, path)
}
fn dataset_name(target: &Path) -> Result<DatasetName, StoreError> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(name.parse()?)
}

/// Unique to each ingest: the time (readable, sortable) and 64 random bits.
fn new_version() -> String {
    let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    format!("{time}-{:016x}", rand::rng().random::<u64>())
}

fn cells_framing() -> Framing {
    Framing {
        id: Field::new(CELL_ID, DataType::UInt64, false),
        first_user_column: OBS_NAME,
        stats: vec![
            Field::new(STAT_N_GENES, DataType::UInt32, false),
            Field::new(STAT_TOTAL, DataType::Float64, false),
        ],
    }
}

fn genes_framing() -> Framing {
    Framing {
        id: Field::new(GENE_IDX, DataType::UInt32, false),
        first_user_column: GENE_ID,
        stats: vec![
            Field::new(STAT_N_CELLS, DataType::UInt64, true),
            Field::new(STAT_MEAN, DataType::Float64, true),
            Field::new(STAT_VARIANCE, DataType::Float64, true),
        ],
    }
}

fn obs_name_only() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new(
        OBS_NAME,
        DataType::Utf8,
        false,
    )]))
}

fn id_array(ids: Range<u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(ids))
}

pub(crate) fn check_same_len(what: &str, got: usize, expected: usize) -> Result<(), StoreError> {
    if got == expected {
        Ok(())
    } else {
        Err(StoreError::InvalidInput(format!(
            "{what} has {got} rows where {expected} were expected"
        )))
    }
}

fn sync(file: File, path: &Path) -> Result<(), StoreError> {
    file.sync_all().map_err(StoreError::io(path))
}
