//! Every cell is streamed exactly once an epoch, evenly over the partitions.

use crate::common;

use cellflight_sampler::{Plan, SamplerConfig};
use common::{epoch, epoch_order, grid};

#[test]
fn every_cell_is_streamed_exactly_once() {
    for (n, config) in grid().filter(|(_, c)| !c.drop_last) {
        let plan = Plan::new(n, &config).unwrap();
        let mut seen = vec![0u32; n as usize];
        let mut padding = Vec::new();
        for (cell, is_padding) in epoch(&plan)
            .into_iter()
            .flatten()
            .flat_map(|(_, rows)| rows)
        {
            if is_padding {
                padding.push(cell);
            } else {
                seen[cell as usize] += 1;
            }
        }
        assert!(seen.iter().all(|&count| count == 1), "n {n} {config:?}");

        // The padding repeats the epoch order from its start.
        let order = epoch_order(&plan);
        let mut expected: Vec<u64> = (0..plan.padding_cells())
            .map(|i| order[(i % n) as usize])
            .collect();
        padding.sort_unstable();
        expected.sort_unstable();
        assert_eq!(padding, expected, "n {n} {config:?}");
        assert!(plan.padding_cells() < u64::from(config.partitions));
    }
}

#[test]
fn partitions_are_even_and_only_their_last_batch_is_short() {
    for (n, config) in grid() {
        let plan = Plan::new(n, &config).unwrap();
        let batch = config.batch_size as usize;
        let mut records = 0;
        for partition in epoch(&plan) {
            let indices: Vec<u64> = partition.iter().map(|(index, _)| *index).collect();
            assert_eq!(
                indices,
                (0..plan.batches_per_partition()).collect::<Vec<_>>()
            );
            for (k, (_, rows)) in partition.iter().enumerate() {
                let last = k + 1 == partition.len();
                assert!(rows.len() == batch || (last && !rows.is_empty() && rows.len() < batch));
                assert!(
                    !(config.drop_last && rows.len() < batch),
                    "drop_last kept a short batch"
                );
            }
            // No cell twice within a partition, padding included.
            let mut cells: Vec<u64> = partition
                .iter()
                .flat_map(|(_, rows)| rows.iter().map(|r| r.0))
                .collect();
            let rows = cells.len();
            cells.sort_unstable();
            cells.dedup();
            assert_eq!(cells.len(), rows, "n {n} {config:?}");
            records += rows as u64;
        }
        assert_eq!(records, plan.total_records(), "n {n} {config:?}");
    }
}

#[test]
fn drop_last_drops_exactly_the_short_batch() {
    for (n, config) in grid().filter(|(_, c)| c.drop_last) {
        let dropped = Plan::new(n, &config).unwrap();
        let kept = Plan::new(
            n,
            &SamplerConfig {
                drop_last: false,
                ..config.clone()
            },
        )
        .unwrap();
        for (mut full, short) in epoch(&kept).into_iter().zip(epoch(&dropped)) {
            if full
                .last()
                .is_some_and(|(_, rows)| rows.len() < config.batch_size as usize)
            {
                full.pop();
            }
            assert_eq!(full, short, "n {n} {config:?}");
        }
    }
}

#[test]
fn small_cohorts_still_feed_every_partition() {
    let config = SamplerConfig {
        partitions: 8,
        ..SamplerConfig::default()
    };
    let plan = Plan::new(3, &config).unwrap();
    assert_eq!(plan.cells_per_partition(), 1);
    assert_eq!(plan.padding_cells(), 5);
    for partition in epoch(&plan) {
        assert_eq!(partition.len(), 1);
        assert_eq!(partition[0].1.len(), 1);
    }

    let empty = Plan::new(0, &config).unwrap();
    assert_eq!(
        (empty.batches_per_partition(), empty.total_records()),
        (0, 0)
    );
    assert!(epoch(&empty).iter().all(Vec::is_empty));
}
