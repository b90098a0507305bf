//! Weighted sampling with replacement: each draw picks cohort position `i`
//! with probability `wᵢ / Σw`, by inverting the cumulative weights.

use rand::RngCore;

use crate::rng::unit;
use crate::{SamplerError, MAX_CELLS};

/// The weights of a cohort's cells, as their running sums (8 bytes a cell).
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// `cumulative[i] = w₀ + … + wᵢ`, summed in order in `f64`.
    cumulative: Vec<f64>,
    /// The last position with a positive weight: where a draw that rounds
    /// up to the total lands.
    last_positive: u64,
    /// The sum of the weights: the last running sum.
    total: f64,
}

impl Weights {
    /// The weights of cohort positions `0, 1, …` in order. Each must be
    /// finite and ≥ 0, and at least one positive.
    pub fn new(weights: impl IntoIterator<Item = f64>) -> Result<Self, SamplerError> {
        let mut cumulative = Vec::new();
        let mut total = 0.0f64;
        let mut last_positive = None;
        for (position, weight) in weights.into_iter().enumerate() {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(SamplerError::BadWeight {
                    position: position as u64,
                    weight,
                });
            }
            if weight > 0.0 {
                last_positive = Some(position as u64);
            }
            total += weight;
            cumulative.push(total);
        }
        if cumulative.len() as u64 > MAX_CELLS {
            return Err(SamplerError::TooManyCells {
                got: cumulative.len() as u64,
                max: MAX_CELLS,
            });
        }
        let last_positive = last_positive.ok_or(SamplerError::NoPositiveWeight {
            cells: cumulative.len() as u64,
        })?;
        if !total.is_finite() {
            return Err(SamplerError::WeightsOverflow);
        }
        cumulative.shrink_to_fit();
        Ok(Weights {
            cumulative,
            total,
            last_positive,
        })
    }

    /// The number of cohort positions weighted.
    pub fn len(&self) -> u64 {
        self.cumulative.len() as u64
    }

    /// Whether there are no positions (never: one weight is positive).
    pub fn is_empty(&self) -> bool {
        self.cumulative.is_empty()
    }

    /// One draw: `t = unit() × total`; the result is the first position
    /// whose running sum exceeds t (so a zero weight is never drawn).
    pub(crate) fn draw(&self, rng: &mut impl RngCore) -> u64 {
        let target = unit(rng) * self.total;
        let position = self.cumulative.partition_point(|&sum| sum <= target) as u64;
        position.min(self.last_positive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Domain};

    #[test]
    fn bad_weights_are_refused_by_position() {
        let error = Weights::new([1.0, -0.5]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "weight of cohort cell 1 must be finite and at least 0, got -0.5"
        );
        assert!(Weights::new([f64::NAN]).is_err());
        assert!(Weights::new([f64::INFINITY]).is_err());
        let error = Weights::new([0.0, 0.0]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "weighted sampling needs a positive weight; all 2 cohort cells weigh 0"
        );
        assert!(matches!(
            Weights::new([f64::MAX, f64::MAX]),
            Err(SamplerError::WeightsOverflow)
        ));
    }

    #[test]
    fn draws_follow_the_weights_and_never_pick_a_zero() {
        let weights = Weights::new([1.0, 0.0, 3.0, 0.0]).unwrap();
        let mut rng = stream(7, 0, Domain::WeightedDraws, 0);
        let mut counts = [0u32; 4];
        for _ in 0..40_000 {
            counts[weights.draw(&mut rng) as usize] += 1;
        }
        assert_eq!((counts[1], counts[3]), (0, 0));
        // Expected 10,000 and 30,000; 5 standard deviations is about 430.
        assert!(counts[0].abs_diff(10_000) < 450, "{counts:?}");
        assert!(counts[2].abs_diff(30_000) < 450, "{counts:?}");
    }
}
