//! Across seeds, cells land uniformly. Chi-square tests per cell over 2,000
//! seeds, at p = 0.001 (the seeds are fixed, so the outcome is too).

use crate::common;

use cellflight_sampler::{Plan, SamplerConfig};
use common::{config, stream};

const SEEDS: u64 = 2_000;

/// Pearson's statistic of `counts` against the uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let expected = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// `counts[cell][position]` over the seeds, positions given by `positions`.
fn position_counts(n: u64, positions: impl Fn(u64) -> Vec<u64>) -> Vec<Vec<u64>> {
    let mut counts = vec![vec![0; n as usize]; n as usize];
    for seed in 0..SEEDS {
        for (position, cell) in positions(seed).into_iter().enumerate() {
            counts[cell as usize][position] += 1;
        }
    }
    counts
}

#[test]
fn with_unit_blocks_every_epoch_position_is_equally_likely() {
    // 20 positions: 19 degrees of freedom, p = 0.001 at 43.82.
    let counts = position_counts(20, |seed| {
        let plan = Plan::new(
            20,
            &SamplerConfig {
                seed,
                ..config(4, 1, 2, 1)
            },
        )
        .unwrap();
        (0..20).map(|p| plan.epoch_cell(p)).collect()
    });
    for (cell, counts) in counts.iter().enumerate() {
        let chi = chi_square(counts);
        assert!(chi < 43.82, "cell {cell}: chi-square {chi:.1}");
    }
}

#[test]
fn with_blocks_every_stream_position_is_equally_likely() {
    // Blocks of 4 keep epoch positions clustered (see the crate docs); the
    // shuffle within fetches of 4 blocks evens the streamed positions out.
    // 64 positions: 63 degrees of freedom, p = 0.001 at 103.44.
    let counts = position_counts(64, |seed| {
        let plan = Plan::new(
            64,
            &SamplerConfig {
                seed,
                ..config(4, 4, 4, 1)
            },
        )
        .unwrap();
        stream(&plan, 0, 0)
            .into_iter()
            .flat_map(|(_, rows)| rows)
            .map(|(cell, _)| cell)
            .collect()
    });
    for (cell, counts) in counts.iter().enumerate() {
        let chi = chi_square(counts);
        assert!(chi < 103.44, "cell {cell}: chi-square {chi:.1}");
    }
}
