//! What can be wrong with a sampling request.

use thiserror::Error;

/// A configuration or a request the plan cannot serve. Each message names
/// the field and what was expected, so it can be shown to a client as is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
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
}
