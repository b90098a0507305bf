//! The plan of one epoch: padding, dealing to partitions, batch counts.

use std::ops::Range;
use std::sync::Arc;

use crate::epoch::EpochOrder;
use crate::fetch::Fetches;
use crate::{Mode, SamplerConfig, SamplerError, Weights};

/// The largest cohort, `u32::MAX` cells: so a row index within a fetch fits
/// a `u32`, and every count of the plan fits a `u64` with room to spare.
pub const MAX_CELLS: u64 = u32::MAX as u64;

/// The sampling plan of one epoch of a cohort of `n_cells` cells: O(1) in
/// memory and to build, whatever the cohort size. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Plan {
    config: SamplerConfig,
    n_cells: u64,
    order: Order,
    cells_per_partition: u64,
}

impl Plan {
    /// The plan of `config.epoch` for a cohort of `n_cells` cells.
    /// Block-shuffle or sequential modes only.
    pub fn new(n_cells: u64, config: &SamplerConfig) -> Result<Plan, SamplerError> {
        if matches!(config.mode, Mode::Weighted { .. }) {
            return Err(SamplerError::WeightsMismatch);
        }
        Self::build(n_cells, None, config)
    }

    /// The plan of `config.epoch` drawing from a cohort with these weights
    /// (one a cohort position); `config.mode` must be weighted.
    pub fn weighted(weights: Arc<Weights>, config: &SamplerConfig) -> Result<Plan, SamplerError> {
        if !matches!(config.mode, Mode::Weighted { .. }) {
            return Err(SamplerError::WeightsMismatch);
        }
        Self::build(weights.len(), Some(weights), config)
    }

    fn build(
        n_cells: u64,
        weights: Option<Arc<Weights>>,
        config: &SamplerConfig,
    ) -> Result<Plan, SamplerError> {
        config.validate()?;
        if n_cells > MAX_CELLS {
            return Err(SamplerError::TooManyCells {
                got: n_cells,
                max: MAX_CELLS,
            });
        }
        // Weighted draws are dealt like cells: ⌈draws / partitions⌉ each.
        let dealt = match config.mode {
            Mode::Weighted { num_samples } if num_samples > MAX_CELLS => {
                return Err(SamplerError::TooManySamples {
                    got: num_samples,
                    max: MAX_CELLS,
                })
            }
            Mode::Weighted { num_samples } => num_samples,
            _ => n_cells,
        };
        Ok(Plan {
            config: config.clone(),
            n_cells,
            order: match weights {
                Some(weights) => Order::Draws(weights),
                None => Order::Epoch(EpochOrder::new(n_cells, config)),
            },
            cells_per_partition: dealt.div_ceil(u64::from(config.partitions)),
        })
    }

    /// The configuration the plan was built from.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The cohort size.
    pub fn n_cells(&self) -> u64 {
        self.n_cells
    }

    /// Cells dealt to each partition, padding included (before `drop_last`):
    /// ⌈n / partitions⌉.
    pub fn cells_per_partition(&self) -> u64 {
        self.cells_per_partition
    }

    /// Padding cells in the epoch: `partitions × cells_per_partition − n`,
    /// at most `partitions − 1`. Weighted plans have none: every row is a
    /// draw (so there are up to `partitions − 1` draws beyond `num_samples`).
    pub fn padding_cells(&self) -> u64 {
        match self.order {
            Order::Draws(_) => 0,
            Order::Epoch(_) => self.partitions() * self.cells_per_partition - self.n_cells,
        }
    }

    /// Weighted mode's weights.
    pub(crate) fn weights(&self) -> Option<&Weights> {
        match &self.order {
            Order::Draws(weights) => Some(weights),
            Order::Epoch(_) => None,
        }
    }

    fn epoch_order(&self) -> &EpochOrder {
        match &self.order {
            Order::Epoch(order) => order,
            Order::Draws(_) => unreachable!("weighted plans draw; they have no epoch order"),
        }
    }

    /// Batches of each partition (the same for all), after `drop_last`.
    pub fn batches_per_partition(&self) -> u64 {
        let batch = u64::from(self.config.batch_size);
        let short = !self.cells_per_partition.is_multiple_of(batch);
        self.cells_per_partition / batch + u64::from(short && !self.config.drop_last)
    }

    /// Cells streamed in the epoch over all partitions, padding included,
    /// after `drop_last`.
    pub fn total_records(&self) -> u64 {
        let batch = u64::from(self.config.batch_size);
        let per_partition = if self.config.drop_last {
            self.cells_per_partition / batch * batch
        } else {
            self.cells_per_partition
        };
        per_partition * self.partitions()
    }

    /// The cohort position at `position` (< n) of the epoch order (the
    /// cohort order for weighted plans, which draw instead).
    ///
    /// # Panics
    /// If `position` is not below the cohort size.
    pub fn epoch_cell(&self, position: u64) -> u64 {
        assert!(
            position < self.n_cells,
            "epoch position {position} is outside the cohort of {} cells",
            self.n_cells
        );
        match &self.order {
            Order::Epoch(order) => order.cell(position),
            Order::Draws(_) => position,
        }
    }

    /// The fetches of `partition` that hold its batches from `start_batch`
    /// on (`start_batch == batches_per_partition()` gives none), made
    /// lazily: the skipped fetches are never computed.
    pub fn fetches(&self, partition: u32, start_batch: u64) -> Result<Fetches, SamplerError> {
        if partition >= self.config.partitions {
            return Err(SamplerError::PartitionOutOfRange {
                got: partition,
                partitions: self.config.partitions,
            });
        }
        let batches = self.batches_per_partition();
        if start_batch > batches {
            return Err(SamplerError::StartBatchOutOfRange {
                got: start_batch,
                batches,
            });
        }
        Ok(Fetches::new(self.clone(), partition, start_batch..batches))
    }

    /// Calls `visit(cohort position, is_padding)` for each position of
    /// `range` of the padded order, in order. Padded position `q ≥ n` repeats
    /// epoch position `(q − n) mod n`.
    pub(crate) fn for_each_cell(&self, range: Range<u64>, mut visit: impl FnMut(u64, bool)) {
        let n = self.n_cells;
        let epoch = range.start.min(n)..range.end.min(n);
        let order = self.epoch_order();
        order.for_each_run(epoch, |run| run.for_each(|cell| visit(cell, false)));
        let mut padded = range.start.max(n);
        while padded < range.end {
            // A repeat may wrap around the epoch order when n < partitions.
            let start = (padded - n) % n;
            let end = (start + (range.end - padded)).min(n);
            order.for_each_run(start..end, |run| run.for_each(|cell| visit(cell, true)));
            padded += end - start;
        }
    }

    fn partitions(&self) -> u64 {
        u64::from(self.config.partitions)
    }
}

/// Where the epoch's cells come from.
#[derive(Debug, Clone)]
enum Order {
    /// Block shuffle or sequential: a permutation of the cohort.
    Epoch(EpochOrder),
    /// Weighted: draws with replacement (the weights are shared: they cost
    /// 8 bytes a cohort cell).
    Draws(Arc<Weights>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_configurations_and_cohorts_are_refused() {
        let config = SamplerConfig {
            fetch_factor: 0,
            ..SamplerConfig::default()
        };
        let error = Plan::new(10, &config).unwrap_err();
        assert_eq!(error.to_string(), "fetch_factor must be at least 1, got 0");

        let error = Plan::new(MAX_CELLS + 1, &SamplerConfig::default()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "n_cells must be at most 4294967295, got 4294967296"
        );
        assert!(Plan::new(MAX_CELLS, &SamplerConfig::default()).is_ok());
    }

    #[test]
    fn counts_follow_padding_and_drop_last() {
        // 10 cells over 3 partitions: 4 each, 2 padding; batches of 3.
        let config = SamplerConfig {
            batch_size: 3,
            partitions: 3,
            ..SamplerConfig::default()
        };
        let plan = Plan::new(10, &config).unwrap();
        assert_eq!(plan.cells_per_partition(), 4);
        assert_eq!(plan.padding_cells(), 2);
        assert_eq!(plan.batches_per_partition(), 2);
        assert_eq!(plan.total_records(), 12);

        let dropped = Plan::new(
            10,
            &SamplerConfig {
                drop_last: true,
                ..config
            },
        )
        .unwrap();
        assert_eq!(dropped.batches_per_partition(), 1);
        assert_eq!(dropped.total_records(), 9);
    }
}
