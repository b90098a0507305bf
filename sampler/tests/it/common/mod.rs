//! Helpers shared by the integration tests: a partition's stream, flattened.

use cellflight_sampler::{Fetch, Mode, Plan, SamplerConfig};

/// One emitted batch: its index and its rows as (cohort position, padding).
pub type Batch = (u64, Vec<(u64, bool)>);

/// The batches of one fetch, resolved through its read order, which must
/// be ascending and read exactly once.
pub fn batches(fetch: &Fetch) -> Vec<Batch> {
    let read_order = fetch.read_order();
    assert!(
        read_order.windows(2).all(|w| w[0] < w[1]),
        "read order not ascending"
    );
    let mut reads: Vec<u32> = fetch.read_indices().to_vec();
    reads.sort_unstable();
    assert!(
        reads.iter().copied().eq(0..read_order.len() as u32),
        "a cell read but not used, or used twice"
    );
    assert_eq!(fetch.is_padding().len(), reads.len());
    fetch
        .batches()
        .map(|batch| {
            let rows = batch
                .read_indices
                .iter()
                .zip(batch.is_padding)
                .map(|(&read, &padding)| (fetch.read_order()[read as usize], padding))
                .collect();
            (batch.index, rows)
        })
        .collect()
}

/// The stream of `partition` from `start_batch` on.
pub fn stream(plan: &Plan, partition: u32, start_batch: u64) -> Vec<Batch> {
    plan.fetches(partition, start_batch)
        .unwrap()
        .flat_map(|fetch| batches(&fetch))
        .collect()
}

/// The whole epoch: each partition's stream from the start.
pub fn epoch(plan: &Plan) -> Vec<Vec<Batch>> {
    (0..plan.config().partitions)
        .map(|partition| stream(plan, partition, 0))
        .collect()
}

/// The epoch order of a plan, as a vector.
pub fn epoch_order(plan: &Plan) -> Vec<u64> {
    (0..plan.n_cells()).map(|p| plan.epoch_cell(p)).collect()
}

/// A block-shuffle configuration with the given shape.
pub fn config(
    batch_size: u32,
    block_size: u32,
    fetch_factor: u32,
    partitions: u32,
) -> SamplerConfig {
    SamplerConfig {
        batch_size,
        block_size,
        fetch_factor,
        partitions,
        mode: Mode::BlockShuffle,
        ..SamplerConfig::default()
    }
}

/// A varied grid of plans, small enough to check exhaustively: odd sizes,
/// empty and tiny cohorts, cohorts smaller than the partition count.
pub fn grid() -> impl Iterator<Item = (u64, SamplerConfig)> {
    let ns = [0u64, 1, 2, 3, 5, 7, 16, 17, 63, 100, 257];
    let shapes = [
        (1, 1, 1),
        (3, 2, 2),
        (8, 5, 1),
        (8, 16, 3),
        (4, 3, 64),
        (64, 16, 64),
    ];
    let partitions = [1u32, 2, 3, 8];
    let modes = [Mode::BlockShuffle, Mode::Sequential];
    ns.into_iter().flat_map(move |n| {
        shapes.into_iter().flat_map(move |(batch, block, fetch)| {
            partitions.into_iter().flat_map(move |parts| {
                modes.into_iter().flat_map(move |mode| {
                    [false, true].into_iter().map(move |drop_last| {
                        let config = SamplerConfig {
                            seed: n * 31 + u64::from(parts),
                            epoch: u64::from(batch),
                            drop_last,
                            mode,
                            ..config(batch, block, fetch, parts)
                        };
                        (n, config)
                    })
                })
            })
        })
    })
}
