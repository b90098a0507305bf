//! `cellflight inspect`: what a dataset holds, and with `--verify` whether
//! it keeps every promise of the format.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use arrow_array::{Array, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, SchemaRef};
use cellflight_store::{verify, Dataset, StoreError};

use super::CommandError;
use crate::cli::InspectArgs;

/// Distinct values are counted exactly up to this many, then reported as "more".
const DISTINCT_CAP: usize = 1_000_000;

pub(super) fn run(args: InspectArgs) -> Result<(), CommandError> {
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
        let faults = verify(&args.dir)?;
        for fault in &faults {
            println!("FAULT {fault}");
        }
        if !faults.is_empty() {
            return Err(CommandError::Faulty {
                dir: args.dir,
                count: faults.len(),
            });
        }
        println!("verified: no faults");
    }
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
    println!("\n{title}: {rows} rows");
    println!(
        "  {:<28} {:<44} {:>10} {:>10}",
        "column", "type", "distinct", "nulls"
    );
    for (field, counter) in schema.fields().iter().zip(&counters) {
        println!(
            "  {:<28} {:<44} {:>10} {:>10}",
            field.name(),
            type_name(field.data_type()),
            counter.distinct(),
            counter.nulls
        );
    }
    Ok(())
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
