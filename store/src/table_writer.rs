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
    user_schema: Option<SchemaRef>,
    schema: Option<SchemaRef>,
    writer: Option<ArrowWriter<File>>,
    version: String,
    rows: u64,
}

impl TableWriter {
    pub(crate) fn new(path: &Path, framing: Framing, version: &str) -> Self {
        Self {
            path: path.to_owned(),
            framing,
            user_schema: None,
            schema: None,
            writer: None,
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
        if self.writer.is_none() {
            self.start(user.schema())?;
        }
        self.check_same_schema(user)?;
        let mut columns = vec![id];
        columns.extend(user.columns().iter().cloned());
        columns.extend(stats);
        let schema = self.schema.clone().expect("started above");
        let batch = RecordBatch::try_new(schema, columns).map_err(StoreError::arrow(&self.path))?;
        let writer = self.writer.as_mut().expect("started above");
        writer
            .write(&batch)
            .map_err(StoreError::parquet(&self.path))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    fn start(&mut self, user_schema: SchemaRef) -> Result<(), StoreError> {
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
        self.writer = Some(writer);
        self.schema = Some(schema);
        self.user_schema = Some(user_schema);
        Ok(())
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

    fn check_same_schema(&self, user: &RecordBatch) -> Result<(), StoreError> {
        let expected = self.user_schema.as_ref().expect("started");
        if user.schema().fields() != expected.fields() {
            return Err(StoreError::InvalidInput(format!(
                "{} rows arrived with columns {:?} after {:?}",
                self.table_name(),
                user.schema().fields(),
                expected.fields()
            )));
        }
        Ok(())
    }

    fn table_name(&self) -> String {
        self.path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Closes the file; a table that got no rows is written with `empty_user_schema`.
    pub(crate) fn finish(mut self, empty_user_schema: SchemaRef) -> Result<File, StoreError> {
        if self.writer.is_none() {
            self.start(empty_user_schema)?;
        }
        let writer = self.writer.take().expect("started above");
        let file = writer
            .into_inner()
            .map_err(StoreError::parquet(&self.path))?;
        Ok(file)
    }
}
