//! A plan for 10^8 cells costs O(1) to build and O(fetch) to serve.

use cellflight_sampler::{Plan, SamplerConfig};

#[test]
fn a_hundred_million_cells_need_no_per_cell_memory() {
    // The plan holds no per-cell or per-block state...
    assert!(std::mem::size_of::<Plan>() <= 256);
    let config = SamplerConfig {
        partitions: 8,
        ..SamplerConfig::default()
    };
    let plan = Plan::new(100_000_000, &config).unwrap();
    assert_eq!(plan.cells_per_partition(), 12_500_000);

    // ...and a fetch only its own cells (64 × 64), even deep in the epoch.
    let mut fetches = plan.fetches(7, 150_000).unwrap();
    let fetch = fetches.next().unwrap();
    assert_eq!(fetch.index(), 150_000 / 64);
    assert!(fetch.read_order().len() <= 64 * 64);
    assert!(fetch.read_order().iter().all(|&cell| cell < 100_000_000));

    let first = plan.fetches(7, 0).unwrap().next().unwrap();
    assert_eq!(first.read_order().len(), 64 * 64);
    assert!(first.read_order().len() / 16 + 2 >= runs(first.read_order()));
}

fn runs(read_order: &[u64]) -> usize {
    1 + read_order.windows(2).filter(|w| w[1] != w[0] + 1).count()
}
