use cellflight_generate::{generate, GenerateOptions};

use super::{rate, CommandError};
use crate::cli::GenerateArgs;
use crate::progress::Progress;

pub(super) fn run(args: GenerateArgs) -> Result<(), CommandError> {
    let options = GenerateOptions {
        output: args.output,
        cells: args.cells,
        genes: args.genes,
        seed: args.seed,
        h5ad: args.h5ad,
        obs_only: args.obs_only,
        replace: args.force,
    };
    let started = std::time::Instant::now();
    let progress = Progress::new("generate");
    let summary = generate(&options, &|cells| progress.advance(cells, options.cells))?;
    progress.finish();
    let m = &summary.manifest;
    println!(
        "generated {} ({} cells x {} genes, {} non-zeros, version {})",
        options.output.display(),
        m.n_cells,
        m.n_genes,
        m.nnz,
        m.version
    );
    if let Some(h5ad) = &summary.h5ad {
        println!("  also as  {}", h5ad.display());
    }
    let elapsed = started.elapsed();
    println!(
        "  speed    {:.1} s: {:.0} cells/min",
        elapsed.as_secs_f64(),
        rate(m.n_cells as f64 * 60.0, elapsed)
    );
    Ok(())
}
