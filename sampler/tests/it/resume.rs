//! Resuming from batch k gives exactly the rest of the stream.

use crate::common;

use cellflight_sampler::{Plan, SamplerError};
use common::{config, grid, stream};

#[test]
fn every_resume_point_gives_the_suffix() {
    for (n, config) in grid() {
        let plan = Plan::new(n, &config).unwrap();
        for partition in 0..config.partitions {
            let full = stream(&plan, partition, 0);
            for start in 0..=plan.batches_per_partition() {
                let resumed = stream(&plan, partition, start);
                assert_eq!(
                    resumed,
                    full[start as usize..],
                    "n {n} start {start} {config:?}"
                );
            }
        }
    }
}

#[test]
fn resuming_reads_only_the_remaining_cells() {
    // batch 4 × fetch 3 = 12 cells a fetch; resuming at batch 4 is batch 1
    // of fetch 1: only its last two batches (8 cells) are read.
    let plan = Plan::new(1000, &config(4, 5, 3, 1)).unwrap();
    let mut fetches = plan.fetches(0, 4).unwrap();
    assert_eq!(fetches.len(), 83); // fetches 1..=83 of the 84
    let first = fetches.next().unwrap();
    assert_eq!((first.index(), first.first_batch()), (1, 4));
    assert_eq!(first.read_order().len(), 8);
    assert_eq!(first.batches().count(), 2);
}

#[test]
fn resume_points_and_partitions_are_checked() {
    let plan = Plan::new(100, &config(10, 4, 2, 2)).unwrap();
    assert_eq!(plan.fetches(0, 5).unwrap().count(), 0);
    assert_eq!(
        plan.fetches(0, 6).unwrap_err(),
        SamplerError::StartBatchOutOfRange { got: 6, batches: 5 }
    );
    let error = plan.fetches(2, 0).unwrap_err();
    assert_eq!(
        error.to_string(),
        "partition must be below partitions (2), got 2"
    );
}
