//! Throughput, for the record rather than as a check:
//!
//! ```text
//! GENERATE_SPEED_CELLS=200000 cargo test -p cellflight-generate --release --test it speed -- --ignored --nocapture
//! ```
//!
//! `GENERATE_SPEED_DIR` keeps the outputs there (e.g. to read the `.h5ad`
//! with anndata) instead of in a temporary directory.

use std::path::PathBuf;
use std::time::Instant;

use cellflight_generate::{generate, GenerateOptions};

fn cells() -> u64 {
    std::env::var("GENERATE_SPEED_CELLS").map_or(200_000, |c| c.parse().unwrap())
}

fn timed(what: &str, options: &GenerateOptions) {
    let start = Instant::now();
    let summary = generate(options, &|_| {}).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let cells = summary.manifest.n_cells as f64;
    println!(
        "{what}: {cells} cells, {} non-zeros in {seconds:.1} s: {:.0} cells/min, {:.0} non-zeros/s ({} threads)",
        summary.manifest.nnz,
        cells / seconds * 60.0,
        summary.manifest.nnz as f64 / seconds,
        rayon::current_num_threads(),
    );
}

#[test]
#[ignore = "a measurement; see the module documentation"]
fn generation_speed() {
    let temporary = tempfile::tempdir().unwrap();
    let dir =
        std::env::var_os("GENERATE_SPEED_DIR").map_or(temporary.path().to_owned(), PathBuf::from);
    let dataset = |name: &str, cells| GenerateOptions {
        replace: true,
        ..GenerateOptions::new(dir.join(name), cells)
    };
    timed("dataset", &dataset("speed", cells()));
    timed(
        "dataset + .h5ad",
        &GenerateOptions {
            h5ad: Some(dir.join("speed.h5ad")),
            ..dataset("speed_h5ad", cells())
        },
    );
    timed(
        "obs only",
        &GenerateOptions {
            obs_only: true,
            ..dataset("speed_obs", 10 * cells())
        },
    );
}
