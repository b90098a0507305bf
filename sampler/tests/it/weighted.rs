//! Weighted mode: draws with replacement in proportion to the weights,
//! dealt evenly, deterministic, resumable.

use std::sync::Arc;

use cellflight_sampler::{Mode, Plan, SamplerConfig, SamplerError, Weights};

fn weighted(num_samples: u64, partitions: u32) -> SamplerConfig {
    SamplerConfig {
        batch_size: 5,
        fetch_factor: 3,
        partitions,
        seed: 11,
        mode: Mode::Weighted { num_samples },
        ..SamplerConfig::default()
    }
}

/// Every row of a partition's stream from `start_batch`, as (batch, cohort
/// position, padding).
fn rows(plan: &Plan, partition: u32, start_batch: u64) -> Vec<(u64, u64, bool)> {
    let mut rows = Vec::new();
    for fetch in plan.fetches(partition, start_batch).unwrap() {
        let read_order = fetch.read_order();
        assert!(read_order.windows(2).all(|w| w[0] < w[1]), "read twice");
        for batch in fetch.batches() {
            for (&read, &padding) in batch.read_indices.iter().zip(batch.is_padding) {
                rows.push((batch.index, read_order[read as usize], padding));
            }
        }
    }
    rows
}

#[test]
fn draws_are_dealt_evenly_and_never_padding() {
    let weights = Arc::new(Weights::new((0..40).map(|i| f64::from(i % 4))).unwrap());
    let plan = Plan::weighted(weights, &weighted(103, 4)).unwrap();
    assert_eq!(plan.cells_per_partition(), 26);
    assert_eq!(plan.batches_per_partition(), 6);
    assert_eq!((plan.padding_cells(), plan.total_records()), (0, 104));
    for partition in 0..4 {
        let rows = rows(&plan, partition, 0);
        assert_eq!(rows.len(), 26);
        assert!(rows
            .iter()
            .all(|&(_, cell, padding)| !padding && cell % 4 != 0));
    }
}

#[test]
fn frequencies_follow_the_weights() {
    // Weight i + 1 for position i: expected share (i + 1) / 55.
    let weights = Arc::new(Weights::new((1..=10).map(f64::from)).unwrap());
    let plan = Plan::weighted(weights, &weighted(110_000, 2)).unwrap();
    let mut counts = [0u64; 10];
    for partition in 0..2 {
        rows(&plan, partition, 0)
            .iter()
            .for_each(|&(_, cell, _)| counts[cell as usize] += 1);
    }
    for (i, &count) in counts.iter().enumerate() {
        let expected = 110_000.0 * (i as f64 + 1.0) / 55.0;
        let sd = (expected * (1.0 - (i as f64 + 1.0) / 55.0)).sqrt();
        assert!(
            (count as f64 - expected).abs() < 5.0 * sd,
            "position {i}: {count} draws, expected {expected}"
        );
    }
}

#[test]
fn the_stream_is_deterministic_differs_by_epoch_and_resumes_as_a_suffix() {
    let weights = Arc::new(Weights::new([1.0, 2.0, 0.5, 4.0, 1.0, 0.0, 3.0]).unwrap());
    let plan = Plan::weighted(weights.clone(), &weighted(200, 3)).unwrap();
    let again = Plan::weighted(weights.clone(), &weighted(200, 3)).unwrap();
    let full = rows(&plan, 1, 0);
    assert_eq!(full, rows(&again, 1, 0));
    let other_epoch = SamplerConfig {
        epoch: 1,
        ..weighted(200, 3)
    };
    let other = Plan::weighted(weights, &other_epoch).unwrap();
    assert_ne!(full, rows(&other, 1, 0));
    for start in 0..=plan.batches_per_partition() {
        let suffix: Vec<_> = full.iter().filter(|r| r.0 >= start).copied().collect();
        assert_eq!(rows(&plan, 1, start), suffix, "resumed at batch {start}");
    }
}

#[test]
fn weights_and_mode_must_agree() {
    let weights = Arc::new(Weights::new([1.0]).unwrap());
    assert_eq!(
        Plan::weighted(weights, &SamplerConfig::default()).unwrap_err(),
        SamplerError::WeightsMismatch
    );
    assert_eq!(
        Plan::new(10, &weighted(5, 1)).unwrap_err(),
        SamplerError::WeightsMismatch
    );
    let weights = Arc::new(Weights::new([1.0]).unwrap());
    let error = Plan::weighted(weights, &weighted(u64::from(u32::MAX) + 1, 1)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "num_samples must be at most 4294967295, got 4294967296"
    );
}
