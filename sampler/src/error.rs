//! What can be wrong with a sampling request.

use thiserror::Error;

/// A configuration or a request the plan cannot serve. Each message names
/// the field and what was expected, so it can be shown to a client as is.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum SamplerError {
    /// A count that must be positive (`batch_size`, `block_size`,
    /// `fetch_factor` or `partitions`) is 0.
    #[error("{field} must be at least 1, got 0")]
    Zero {
        /// The name of the field, as in [`SamplerConfig`](crate::SamplerConfig).
        field: &'static str,
    },
    /// The cohort is larger than [`MAX_CELLS`](crate::MAX_CELLS).
    #[error("n_cells must be at most {max}, got {got}")]
    TooManyCells {
        /// The cohort size asked for.
        got: u64,
        /// The largest cohort size.
        max: u64,
    },
    /// A partition that the plan does not have.
    #[error("partition must be below partitions ({partitions}), got {got}")]
    PartitionOutOfRange {
        /// The partition asked for.
        got: u32,
        /// The number of partitions of the plan.
        partitions: u32,
    },
    /// A resume point past the end of the partition's stream.
    #[error("start_batch must be at most batches_per_partition ({batches}), got {got}")]
    StartBatchOutOfRange {
        /// The batch asked for.
        got: u64,
        /// The number of batches of each partition.
        batches: u64,
    },
    /// A weight that is negative, NaN or infinite.
    #[error("weight of cohort cell {position} must be finite and at least 0, got {weight}")]
    BadWeight {
        /// The cohort position of the weight.
        position: u64,
        /// The weight given.
        weight: f64,
    },
    /// Every weight is 0, so nothing can be drawn.
    #[error("weighted sampling needs a positive weight; all {cells} cohort cells weigh 0")]
    NoPositiveWeight {
        /// The cohort size.
        cells: u64,
    },
    /// The weights sum to more than an `f64` holds.
    #[error("the weights sum to more than the largest float; scale them down")]
    WeightsOverflow,
    /// More weighted draws than [`MAX_CELLS`](crate::MAX_CELLS).
    #[error("num_samples must be at most {max}, got {got}")]
    TooManySamples {
        /// The draws asked for.
        got: u64,
        /// The largest number of draws.
        max: u64,
    },
    /// Weighted mode without weights, or weights without weighted mode.
    #[error("weights are given exactly when the mode is weighted")]
    WeightsMismatch,
}
