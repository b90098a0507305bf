//! Writes `cells.parquet` and `genes.parquet`: the caller's columns framed
//! by the row id cellflight puts first and the statistics it puts last.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::{StoreError, VERSION_METADATA_KEY};

/// What cellflight adds around the caller's columns of one table.
pub(crate) struct Framing {
    /// The row id column, first.
    pub id: Field,
    /// The column the caller's batch must start with.
    pub first_user_column: &'static str,
    /// Statistics columns, last.
    pub stats: Vec<Field>,
}

pub(crate) struct TableWriter {
    path: PathBuf,
    framing: Framing,
    /// From the first rows on (or `finish`, for a table without rows).
    open: Option<OpenTable>,
    version: String,
    rows: u64,
}

/// A table file being written, its schema fixed by its first rows.
struct OpenTable {
    user_schema: SchemaRef,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
}

impl TableWriter {
    pub(crate) fn new(path: &Path, framing: Framing, version: &str) -> Self {
        Self {
            path: path.to_owned(),
            framing,
            open: None,
            version: version.to_owned(),
            rows: 0,
        }
    }

    /// Writes `user` rows framed by `id` and `stats` (one array per stats field).
    pub(crate) fn write(
        &mut self,
        id: ArrayRef,
        user: &RecordBatch,
        stats: Vec<ArrayRef>,
    ) -> Result<(), StoreError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.start(user.schema())?,
        };
        let open = self.open.insert(open);
        check_same_schema(&self.path, &open.user_schema, user)?;
        let mut columns = vec![id];
        columns.extend(user.columns().iter().cloned());
        columns.extend(stats);
        let batch = RecordBatch::try_new(open.schema.clone(), columns)
            .map_err(StoreError::arrow(&self.path))?;
        open.writer
            .write(&batch)
            .map_err(StoreError::parquet(&self.path))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn start(&self, user_schema: SchemaRef) -> Result<OpenTable, StoreError> {
        self.check_user_columns(&user_schema)?;
        let framing = &self.framing;
        let mut fields = vec![Arc::new(framing.id.clone())];
        fields.extend(user_schema.fields().iter().cloned());
        fields.extend(framing.stats.iter().cloned().map(Arc::new));
        let schema = Arc::new(Schema::new(fields));
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                VERSION_METADATA_KEY.to_owned(),
                self.version.clone(),
            )]))
            .build();
        let file = File::create(&self.path).map_err(StoreError::io(&self.path))?;
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties))
            .map_err(StoreError::parquet(&self.path))?;
        Ok(OpenTable {
            user_schema,
            schema,
            writer,
        })
    }

    fn check_user_columns(&self, schema: &Schema) -> Result<(), StoreError> {
        let table = self.table_name();
        let first = schema.fields().first().map(|f| f.name().as_str());
        if first != Some(self.framing.first_user_column) {
            return Err(StoreError::InvalidInput(format!(
                "the {table} columns must start with {:?}, found {first:?}",
                self.framing.first_user_column
            )));
        }
        let reserved = std::iter::once(&self.framing.id).chain(&self.framing.stats);
        for field in reserved {
            if schema.field_with_name(field.name()).is_ok() {
                return Err(StoreError::InvalidInput(format!(
                    "the source has a {table} column named {:?}, a name cellflight reserves for a column it adds",
                    field.name()
                )));
            }
        }
        Ok(())
    }

    fn table_name(&self) -> String {
        table_name(&self.path)
    }

    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes the file; a table that got no rows is written with `empty_user_schema`.
    pub(crate) fn finish(mut self, empty_user_schema: SchemaRef) -> Result<File, StoreError> {
        let open = match self.open.take() {
            Some(open) => open,
            None => self.start(empty_user_schema)?,
        };
        let file = open
            .writer
            .into_inner()
            .map_err(StoreError::parquet(&self.path))?;
        Ok(file)
    }
}

fn table_name(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every batch of a table has the columns of its first.
fn check_same_schema(path: &Path, expected: &Schema, user: &RecordBatch) -> Result<(), StoreError> {
    if user.schema().fields() != expected.fields() {
        return Err(StoreError::InvalidInput(format!(
            "{} rows arrived with columns {:?} after {:?}",
            table_name(path),
            user.schema().fields(),
            expected.fields()
        )));
    }
    Ok(())
}
