//! Where every random number comes from, and how raw bits become numbers.
//!
//! Each use of randomness ([`Purpose`]) has its own ChaCha8 key, and each
//! chunk of cells its own stream under that key:
//!
//! ```text
//! key    = seed as u64 little-endian ‖ purpose as u64 little-endian ‖ 16 zero bytes
//! rng    = ChaCha8Rng::from_seed(key), then set_stream(chunk index)
//! ```
//!
//! So a chunk's numbers depend on nothing but (seed, purpose, chunk index):
//! not on the thread that draws them nor on the order chunks are made in.
//! ChaCha8 output is value-stable across `rand_chacha` versions; the
//! conversions below are our own (not `rand_distr`'s, which may change its
//! algorithms between releases), so the data is too. One caveat: `ln`,
//! `exp` and `cos` come from the platform's libm, which may differ in the
//! last bit between platforms, and so, very rarely, may a rounded draw.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The independent uses of randomness. The values are part of the format of
/// the generated data: never renumber them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// The dose of each (plate, drug) well.
    Design = 0,
    /// Which genes are popular (a permutation of gene ranks).
    GeneRanks = 1,
    /// The marker genes of each cell line and drug.
    Programs = 2,
    /// Per cell: its cell line and its number of expressed genes.
    Cells = 3,
    /// Per cell: which genes it expresses and their counts.
    Expression = 4,
    /// Per cell of an obs-only dataset: its approximate total count.
    Totals = 5,
}

/// The stream of `purpose` for chunk `index` (use 0 for one-off draws).
pub(crate) fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(purpose as u64).to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    rng.set_stream(index);
    rng
}

/// A uniform number in (0, 1], from the top 53 bits (never 0, so its
/// logarithm and inverse square root are finite).
#[inline]
pub(crate) fn unit_open(bits: u64) -> f64 {
    ((bits >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer below `n`, by multiply-and-shift (bias under 2^-64·n).
#[inline]
pub(crate) fn below(bits: u64, n: u64) -> u64 {
    ((u128::from(bits) * u128::from(n)) >> 64) as u64
}

/// A standard normal number (Box–Muller, cosine branch).
pub(crate) fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let radius = (-2.0 * unit_open(rng.next_u64()).ln()).sqrt();
    let angle = std::f64::consts::TAU * unit_open(rng.next_u64());
    radius * angle.cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_depends_only_on_seed_purpose_and_index() {
        let first = |seed, purpose, index| stream(seed, purpose, index).next_u64();
        assert_eq!(first(7, Purpose::Cells, 3), first(7, Purpose::Cells, 3));
        assert_ne!(first(7, Purpose::Cells, 3), first(8, Purpose::Cells, 3));
        assert_ne!(
            first(7, Purpose::Cells, 3),
            first(7, Purpose::Expression, 3)
        );
        assert_ne!(first(7, Purpose::Cells, 3), first(7, Purpose::Cells, 4));
    }

    #[test]
    fn conversions_stay_in_range() {
        assert_eq!(unit_open(0), 1.0 / (1u64 << 53) as f64);
        assert_eq!(unit_open(u64::MAX), 1.0);
        assert_eq!(below(0, 10), 0);
        assert_eq!(below(u64::MAX, 10), 9);
    }

    #[test]
    fn normals_have_mean_0_and_variance_1() {
        let mut rng = stream(1, Purpose::Cells, 0);
        let draws: Vec<f64> = (0..20_000).map(|_| standard_normal(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let variance = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((variance - 1.0).abs() < 0.05, "variance {variance}");
    }
}
