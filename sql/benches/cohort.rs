//! Cohort selection at atlas scale (issue 3's target: half of a 10M-row
//! `cells` table in under 2 s on this 2-core machine).
//!
//!     cargo bench -p cellflight-sql --bench cohort -- [DATASET_DIR]
//!
//! With no DATASET_DIR it generates a 10M-cell obs-only dataset into a
//! temporary directory first. Each predicate is timed cold (empty cache)
//! `RUNS` times; the median is reported, then one cached lookup.

#![allow(
    unreachable_pub,
    clippy::expect_used,
    reason = "a benchmark: its setup failing is a failed run"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cellflight_generate::{generate, GenerateOptions};
use cellflight_sql::{cohort, CatalogSnapshot, CohortCache, CohortQuery, SqlEngine, SqlLimits};
use cellflight_store::Dataset;

const CELLS: u64 = 10_000_000;
const RUNS: usize = 5;
const PREDICATES: [&str; 3] = [
    "cell_id % 2 = 0",
    "cell_id < 5000000",
    "plate IN ('plate1', 'plate2', 'plate3', 'plate4', 'plate5', 'plate6', 'plate7')",
];

fn main() {
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let dir = match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(dir) => PathBuf::from(dir),
        None => generated(scratch.path()),
    };
    let dataset = Arc::new(Dataset::open(&dir).expect("an openable dataset"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench(dataset));
}

fn generated(root: &Path) -> PathBuf {
    let output = root.join("cohort_bench");
    let started = Instant::now();
    let mut options = GenerateOptions::new(&output, CELLS);
    options.obs_only = true;
    generate(&options, &|_| {}).expect("generate");
    eprintln!(
        "generated {CELLS} obs-only cells in {:.1?}",
        started.elapsed()
    );
    output
}

async fn bench(dataset: Arc<Dataset>) {
    let name = dataset.manifest().name.to_string();
    let n_cells = dataset.manifest().n_cells;
    let snapshot = CatalogSnapshot::new(vec![dataset], None).expect("a catalog");
    let limits = SqlLimits {
        memory_bytes: 2 << 30,
        query_memory_bytes: 2 << 30,
        timeout: Duration::from_secs(600),
        max_rows: usize::MAX,
        planning_threads: 2,
    };
    let engine = SqlEngine::new(limits, None).expect("an engine");
    println!("| predicate | cells selected | of | cold median (s) | cold runs (s) | cached (ms) |");
    println!("|---|---|---|---|---|---|");
    for predicate in PREDICATES {
        let query = CohortQuery::Predicate(predicate.to_string());
        let mut runs = Vec::new();
        let mut selected = 0;
        let cache = CohortCache::new(1 << 30);
        for _ in 0..RUNS {
            let cache = CohortCache::new(1 << 30);
            let started = Instant::now();
            let cohort = cohort(&engine, &snapshot, &cache, &name, &query)
                .await
                .expect("a cohort");
            runs.push(started.elapsed().as_secs_f64());
            selected = cohort.len();
        }
        cohort(&engine, &snapshot, &cache, &name, &query)
            .await
            .expect("a cohort");
        let started = Instant::now();
        cohort(&engine, &snapshot, &cache, &name, &query)
            .await
            .expect("a cohort");
        let cached = started.elapsed();
        let mut sorted = runs.clone();
        sorted.sort_by(f64::total_cmp);
        let runs: Vec<String> = runs.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "| `{predicate}` | {selected} | {n_cells} | {:.2} | {} | {:.3} |",
            sorted[RUNS / 2],
            runs.join(", "),
            cached.as_secs_f64() * 1e3
        );
    }
}
