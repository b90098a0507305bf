//! What a client asks for: the sampling parameters of one epoch.

use crate::SamplerError;

/// How an epoch orders the cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Shuffle blocks of consecutive cells, then shuffle within each fetch
    /// (see the [crate documentation](crate)).
    #[default]
    BlockShuffle,
    /// Cohort order, unshuffled: for evaluation and inference.
    Sequential,
    /// `num_samples` draws with replacement, each cohort cell drawn with
    /// probability proportional to its weight ([`Weights`](crate::Weights)).
    Weighted {
        /// Draws in the epoch, over all partitions (before rounding up to
        /// a multiple of `partitions`).
        num_samples: u64,
    },
}

/// The parameters of one epoch of sampling. Build a [`Plan`](crate::Plan)
/// from it; that validates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SamplerConfig {
    /// Cells per batch (≥ 1; default 64).
    pub batch_size: u32,
    /// Consecutive cohort positions per shuffled block (≥ 1; default 16).
    pub block_size: u32,
    /// Batches per fetch (≥ 1; default 64): a fetch of
    /// `batch_size × fetch_factor` cells is read, then shuffled as a whole.
    pub fetch_factor: u32,
    /// The user's seed (default 0).
    pub seed: u64,
    /// The epoch number (default 0): each epoch has its own order.
    pub epoch: u64,
    /// The number of streams the epoch is dealt to (≥ 1; default 1), e.g.
    /// one a data-parallel rank × data-loader worker.
    pub partitions: u32,
    /// Drop each partition's last batch if it is short (default false).
    pub drop_last: bool,
    /// Shuffled or sequential (default [`Mode::BlockShuffle`]).
    pub mode: Mode,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            batch_size: 64,
            block_size: 16,
            fetch_factor: 64,
            seed: 0,
            epoch: 0,
            partitions: 1,
            drop_last: false,
            mode: Mode::BlockShuffle,
        }
    }
}

impl SamplerConfig {
    /// Checks that every count is positive; the error names the first field
    /// that is not.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let num_samples = match self.mode {
            Mode::Weighted { num_samples } => num_samples,
            _ => 1,
        };
        let counts = [
            ("batch_size", u64::from(self.batch_size)),
            ("block_size", u64::from(self.block_size)),
            ("fetch_factor", u64::from(self.fetch_factor)),
            ("partitions", u64::from(self.partitions)),
            ("num_samples", num_samples),
        ];
        match counts.into_iter().find(|&(_, value)| value == 0) {
            Some((field, _)) => Err(SamplerError::Zero { field }),
            None => Ok(()),
        }
    }

    /// Cells per fetch (at most (2^32 − 1)², so it fits a `u64`).
    pub(crate) fn fetch_size(&self) -> u64 {
        u64::from(self.batch_size) * u64::from(self.fetch_factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid() {
        assert_eq!(SamplerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_zero_count_is_named_in_the_error() {
        for field in [
            "batch_size",
            "block_size",
            "fetch_factor",
            "partitions",
            "num_samples",
        ] {
            let mut config = SamplerConfig::default();
            match field {
                "batch_size" => config.batch_size = 0,
                "block_size" => config.block_size = 0,
                "fetch_factor" => config.fetch_factor = 0,
                "partitions" => config.partitions = 0,
                _ => config.mode = Mode::Weighted { num_samples: 0 },
            }
            let error = config.validate().unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{field} must be at least 1, got 0")
            );
        }
    }
}
