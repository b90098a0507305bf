//! The exact stream of one configuration, pinned: any change to the
//! sampling (algorithm, constants, random streams) fails here. The values
//! were computed by an independent implementation of the crate docs.

use crate::common;

use cellflight_sampler::{Plan, SamplerConfig};
use common::stream;

fn cells(batch: &[(u64, bool)]) -> Vec<u64> {
    assert!(batch.iter().all(|&(_, padding)| !padding));
    batch.iter().map(|&(cell, _)| cell).collect()
}

#[test]
fn the_stream_of_a_fixed_configuration_is_pinned() {
    let config = SamplerConfig {
        batch_size: 8,
        block_size: 4,
        fetch_factor: 2,
        seed: 42,
        epoch: 3,
        partitions: 2,
        ..SamplerConfig::default()
    };
    let plan = Plan::new(1000, &config).unwrap();
    assert_eq!(plan.batches_per_partition(), 63);

    let expected: [[&[u64]; 4]; 2] = [
        [
            &[872, 774, 97, 660, 661, 658, 776, 96],
            &[659, 870, 94, 873, 777, 775, 95, 871],
            &[677, 16, 674, 15, 676, 932, 675, 14],
            &[697, 694, 696, 695],
        ],
        [
            &[711, 493, 510, 713, 712, 682, 683, 684],
            &[710, 685, 513, 491, 511, 490, 492, 512],
            &[250, 562, 570, 229, 251, 564, 565, 572],
            &[725, 723, 724, 722],
        ],
    ];
    for (partition, expected) in (0..2).zip(expected) {
        let batches = stream(&plan, partition, 0);
        let first_and_last = [&batches[0], &batches[1], &batches[2], &batches[62]];
        for ((index, rows), expected) in first_and_last.into_iter().zip(expected) {
            assert_eq!(cells(rows), expected, "partition {partition} batch {index}");
        }
    }
}
