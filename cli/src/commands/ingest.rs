use cellflight_ingest::{ingest, IngestOptions, IngestSummary, MatrixSelection, MemoryBudget};

use super::output::DatasetOutput;
use super::{rate, CommandError};
use crate::cli::IngestArgs;
use crate::progress::Progress;

pub(super) fn run(args: IngestArgs) -> Result<(), CommandError> {
    let matrix = match (args.layer, args.raw) {
        (Some(layer), _) => MatrixSelection::Layer(layer),
        (None, true) => MatrixSelection::Raw,
        (None, false) => MatrixSelection::X,
    };
    let output = DatasetOutput::parse(&args.output, args.force)?;
    let options = IngestOptions {
        input: args.input,
        output: output.dir().to_owned(),
        matrix,
        replace: output.replaces_local(args.force),
        memory: MemoryBudget(args.memory.0),
    };
    let progress = Progress::new("ingest");
    let summary = ingest(&options, &|cells, total| progress.advance(cells, total))?;
    progress.finish();
    print_summary(&options, &args.output, &summary);
    if let Some(published) = output.finish(args.force)? {
        println!("  published  {}", published.url);
    }
    Ok(())
}

fn print_summary(options: &IngestOptions, output: &str, summary: &IngestSummary) {
    let m = &summary.manifest;
    let seconds = summary.elapsed.as_secs_f64();
    println!(
        "ingested {} ({}) into {}",
        options.input.display(),
        m.provenance.matrix,
        output
    );
    println!("  dataset    {} version {}", m.name, m.version);
    println!(
        "  shape      {} cells x {} genes, {} non-zeros",
        m.n_cells, m.n_genes, m.nnz
    );
    if let Some(matrix) = &m.matrix {
        println!(
            "  types      indices {:?}, values {:?}",
            matrix.index_type, matrix.value_type
        );
    }
    println!(
        "  speed      {seconds:.2} s: {:.0} cells/s, {:.1} MB/s of .h5ad",
        rate(m.n_cells as f64, summary.elapsed),
        rate(summary.input_bytes as f64 / 1e6, summary.elapsed)
    );
    if m.skipped.is_empty() {
        println!("  skipped    nothing");
    } else {
        println!("  skipped    {}", m.skipped.join(", "));
    }
}
