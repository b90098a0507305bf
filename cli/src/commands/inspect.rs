//! `cellflight inspect`: what a dataset or a collection holds, and with
//! `--verify` whether it (each member of a collection) keeps every promise
//! of the format.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, FieldRef, SchemaRef};
use cellflight_schemas::{DatasetName, Join, COLLECTION_SUFFIX};
use cellflight_store::{read_definition, verify, Collection, Dataset, StoreError, Table};

use super::{collection, CommandError};
use crate::cli::InspectArgs;

/// Distinct values are counted exactly up to this many, then reported as "more".
const DISTINCT_CAP: usize = 1_000_000;

pub(super) fn run(args: InspectArgs) -> Result<(), CommandError> {
    if let Some(name) = collection_name(&args.dir) {
        return inspect_collection(&args, name);
    }
    let dataset = Dataset::open(&args.dir)?;
    print_overview(&dataset);
    let cells = dataset.cells();
    print_columns(
        "cells (obs)",
        cells.schema().clone(),
        cells.build().map_err(parquet(&dataset))?,
    )?;
    let genes = dataset.genes();
    print_columns(
        "genes (var)",
        genes.schema().clone(),
        genes.build().map_err(parquet(&dataset))?,
    )?;
    if args.verify {
        verify_datasets(&args.dir, [args.dir.as_path()])?;
    }
    Ok(())
}

/// The name of the collection whose file `path` is (`NAME.collection.json`).
fn collection_name(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()?.strip_suffix(COLLECTION_SUFFIX)
}

fn inspect_collection(args: &InspectArgs, name: &str) -> Result<(), CommandError> {
    let name: DatasetName = (name.parse()).map_err(|e| CommandError::Usage(format!("{e}")))?;
    let data = args.dir.parent().unwrap_or(Path::new("."));
    let definition = read_definition(&args.dir)?;
    let collection = collection::open(data, name, &args.dir, definition)?;
    print_collection_overview(&collection, &args.dir);
    let mut cells = Vec::new();
    for column in collection.cells() {
        let (field, array) = collection.column(Table::Cells, column.field.name())?;
        let mut counter = ColumnCounter::default();
        counter.add(array.as_ref());
        cells.push((field, counter));
    }
    print_stats("cells (obs)", collection.n_cells() as usize, &cells);
    let genes = collection.genes_table();
    print_columns(
        "genes (var)",
        genes.schema(),
        std::iter::once(Ok(genes.clone())),
    )?;
    if args.verify {
        let members = collection.members().iter().map(|member| member.dir());
        verify_datasets(&args.dir, members)?;
    }
    Ok(())
}

fn print_collection_overview(collection: &Collection, path: &Path) {
    let definition = collection.definition();
    println!("collection {} ({})", collection.name(), path.display());
    println!("version    {}", collection.version());
    let join = match definition.join {
        Join::Outer => "outer",
        Join::Inner => "inner",
    };
    println!("join       {join} on {}", definition.gene_key);
    println!(
        "shape      {} cells x {} genes ({} stored), {} non-zeros",
        collection.n_cells(),
        collection.n_genes(),
        collection.n_stored_genes(),
        collection.nnz()
    );
    for member in collection.members() {
        let m = member.manifest();
        println!(
            "member     {} ({}): {} cells x {} genes, version {}",
            m.name,
            member.dir().display(),
            m.n_cells,
            m.n_genes,
            m.version
        );
    }
}

/// Verifies each dataset directory of `dirs`, printing its faults; an
/// error naming `inspected` if any.
fn verify_datasets<'a>(
    inspected: &Path,
    dirs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), CommandError> {
    let mut count = 0;
    for dir in dirs {
        let faults = verify(dir)?;
        for fault in &faults {
            println!("FAULT {}: {fault}", dir.display());
        }
        count += faults.len();
    }
    if count > 0 {
        return Err(CommandError::Faulty {
            dir: inspected.to_owned(),
            count,
        });
    }
    println!("verified: no faults");
    Ok(())
}

fn print_overview(dataset: &Dataset) {
    let m = dataset.manifest();
    println!("dataset   {} ({})", m.name, dataset.dir().display());
    println!("version   {}", m.version);
    println!(
        "shape     {} cells x {} genes, {} non-zeros",
        m.n_cells, m.n_genes, m.nnz
    );
    match &m.matrix {
        Some(matrix) => println!(
            "matrix    {}: indices {:?}, values {:?}, {} cells a batch, {} batches",
            matrix.file,
            matrix.index_type,
            matrix.value_type,
            matrix.cells_per_batch,
            matrix.n_batches
        ),
        None => println!("matrix    none (obs-only dataset)"),
    }
    println!(
        "source    {} ({}), {} by {}",
        m.provenance.source, m.provenance.matrix, m.provenance.created_at, m.provenance.tool
    );
    if !m.skipped.is_empty() {
        println!("skipped   {}", m.skipped.join(", "));
    }
}

/// Per column: type, distinct values and nulls, in one pass over the table.
fn print_columns(
    title: &str,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, arrow_schema::ArrowError>>,
) -> Result<(), CommandError> {
    let mut counters: Vec<ColumnCounter> = schema
        .fields()
        .iter()
        .map(|_| ColumnCounter::default())
        .collect();
    let mut rows = 0;
    for batch in batches {
        let batch = batch.map_err(|e| CommandError::Serve(format!("{title}: {e}")))?;
        rows += batch.num_rows();
        for (counter, column) in counters.iter_mut().zip(batch.columns()) {
            counter.add(column.as_ref());
        }
    }
    let columns: Vec<(FieldRef, ColumnCounter)> =
        schema.fields().iter().cloned().zip(counters).collect();
    print_stats(title, rows, &columns);
    Ok(())
}

fn print_stats(title: &str, rows: usize, columns: &[(FieldRef, ColumnCounter)]) {
    println!("\n{title}: {rows} rows");
    println!(
        "  {:<28} {:<44} {:>10} {:>10}",
        "column", "type", "distinct", "nulls"
    );
    for (field, counter) in columns {
        println!(
            "  {:<28} {:<44} {:>10} {:>10}",
            field.name(),
            type_name(field.data_type()),
            counter.distinct(),
            counter.nulls
        );
    }
}

fn type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Dictionary(_, values) => format!("categorical ({values})"),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct ColumnCounter {
    hashes: HashSet<u64>,
    hasher: RandomState,
    nulls: usize,
    capped: bool,
}

impl ColumnCounter {
    fn add(&mut self, column: &dyn Array) {
        self.nulls += column.null_count();
        if self.capped {
            return;
        }
        let Ok(formatter) = ArrayFormatter::try_new(column, &FormatOptions::default()) else {
            return;
        };
        for row in (0..column.len()).filter(|&row| column.is_valid(row)) {
            self.hashes
                .insert(self.hasher.hash_one(formatter.value(row).to_string()));
            if self.hashes.len() > DISTINCT_CAP {
                self.capped = true;
                self.hashes = HashSet::new();
                return;
            }
        }
    }

    fn distinct(&self) -> String {
        if self.capped {
            format!(">{DISTINCT_CAP}")
        } else {
            self.hashes.len().to_string()
        }
    }
}

fn parquet(dataset: &Dataset) -> impl FnOnce(parquet::errors::ParquetError) -> CommandError + '_ {
    move |e| {
        CommandError::Store(StoreError::Parquet {
            path: dataset.dir().to_owned(),
            source: e,
        })
    }
}
