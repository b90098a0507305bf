//! The stream is a function of (cohort size, configuration) only, and each
//! epoch and seed has its own.

use crate::common;

use std::collections::BTreeSet;

use cellflight_sampler::{Mode, Plan, SamplerConfig};
use common::{config, epoch, epoch_order};

fn plan(seed: u64, epoch: u64) -> Plan {
    Plan::new(
        1000,
        &SamplerConfig {
            seed,
            epoch,
            ..config(8, 16, 4, 3)
        },
    )
    .unwrap()
}

#[test]
fn the_same_configuration_gives_the_same_stream() {
    assert_eq!(epoch(&plan(5, 2)), epoch(&plan(5, 2)));
}

#[test]
fn another_epoch_or_seed_gives_another_order() {
    let base = epoch(&plan(5, 2));
    assert_ne!(base, epoch(&plan(6, 2)));
    assert_ne!(base, epoch(&plan(5, 3)));
    assert_ne!(epoch_order(&plan(5, 2)), epoch_order(&plan(5, 3)));
}

/// The block offset of a plan's epoch, seen in its epoch order: a run of
/// consecutive cohort positions starts at a block start, and every block
/// start but 0 is ≡ offset (mod block size).
fn offset(plan: &Plan) -> u64 {
    let order = epoch_order(plan);
    let residues: BTreeSet<u64> = order
        .windows(2)
        .filter(|w| w[1] != w[0] + 1 && w[1] != 0)
        .map(|w| w[1] % 16)
        .collect();
    assert_eq!(residues.len(), 1, "block starts off the grid: {residues:?}");
    residues.into_iter().next().unwrap()
}

#[test]
fn block_boundaries_move_between_epochs() {
    let offsets: BTreeSet<u64> = (0..8).map(|e| offset(&plan(5, e))).collect();
    assert!(
        offsets.len() > 1,
        "the same boundaries in 8 epochs: {offsets:?}"
    );
}

#[test]
fn sequential_mode_streams_the_cohort_in_order() {
    let config = SamplerConfig {
        mode: Mode::Sequential,
        ..config(8, 16, 4, 3)
    };
    let plan = Plan::new(1000, &config).unwrap();
    assert_eq!(epoch_order(&plan), (0..1000).collect::<Vec<_>>());
    let rows: Vec<(u64, bool)> = epoch(&plan)
        .into_iter()
        .flatten()
        .flat_map(|(_, rows)| rows)
        .collect();
    // 3 × 334 = 1002: the first two cells again, as padding.
    let expected: Vec<(u64, bool)> = (0..1000)
        .map(|c| (c, false))
        .chain([(0, true), (1, true)])
        .collect();
    assert_eq!(rows, expected);
    // Sequential ignores the seed and the epoch.
    let other = Plan::new(
        1000,
        &SamplerConfig {
            seed: 9,
            epoch: 9,
            ..config
        },
    )
    .unwrap();
    assert_eq!(epoch(&plan), epoch(&other));
}
