//! Fetches read blocks: few runs of consecutive cohort positions.

use crate::common;

use cellflight_sampler::Plan;
use common::config;

/// Runs of consecutive positions in a sorted read order.
fn runs(read_order: &[u64]) -> usize {
    1 + read_order.windows(2).filter(|w| w[1] != w[0] + 1).count()
}

/// The largest number of runs in any fetch of partition 0.
fn max_runs(block_size: u32) -> usize {
    let plan = Plan::new(100_000, &config(64, block_size, 4, 2)).unwrap();
    plan.fetches(0, 0)
        .unwrap()
        .map(|fetch| runs(fetch.read_order()))
        .max()
        .unwrap()
}

#[test]
fn a_fetch_reads_about_one_run_a_block() {
    // 256 cells a fetch: 256 / 16 = 16 blocks, plus the two cut by the
    // fetch's ends; neighbouring blocks may merge into one run.
    let blocks = max_runs(16);
    assert!((2..=18).contains(&blocks), "{blocks} runs");
    // Without blocks, a fetch is scattered over the cohort.
    assert!(max_runs(1) > 200);
}
