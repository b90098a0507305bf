use cellflight_generate::{generate, GenerateOptions};

use super::output::DatasetOutput;
use super::{rate, CommandError};
use crate::cli::GenerateArgs;
use crate::progress::Progress;

pub(super) fn run(args: GenerateArgs) -> Result<(), CommandError> {
    let output = DatasetOutput::parse(&args.output, args.force)?;
    let options = GenerateOptions {
        output: output.dir().to_owned(),
        cells: args.cells,
        genes: args.genes,
        seed: args.seed,
        h5ad: args.h5ad,
        obs_only: args.obs_only,
        replace: output.replaces_local(args.force),
    };
    let started = std::time::Instant::now();
    let progress = Progress::new("generate");
    let summary = generate(&options, &|cells| progress.advance(cells, options.cells))?;
    progress.finish();
    let m = &summary.manifest;
    println!(
        "generated {} ({} cells x {} genes, {} non-zeros, version {})",
        args.output, m.n_cells, m.n_genes, m.nnz, m.version
    );
    if let Some(h5ad) = &summary.h5ad {
        println!("  also as  {}", h5ad.display());
    }
    if let Some(published) = output.finish(args.force)? {
        println!("  published {}", published.url);
    }
    let elapsed = started.elapsed();
    println!(
        "  speed    {:.1} s: {:.0} cells/min",
        elapsed.as_secs_f64(),
        rate(m.n_cells as f64 * 60.0, elapsed)
    );
    Ok(())
}
