//! Where every random number comes from, and how raw bits become integers.
//!
//! Only ChaCha8's raw output (stable across `rand_chacha` versions) and the
//! functions here are used; `rand`'s own sampling algorithms may change
//! between releases and would silently change the streams. The exact
//! derivation is in the [crate documentation](crate#randomness).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The independent uses of randomness. The values are part of the stream
/// definition: never renumber them.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Domain {
    /// The epoch's block offset, then the block permutation's round keys.
    Blocks = 1,
    /// The shuffle of one fetch of one partition.
    FetchShuffle = 2,
    /// The weighted draws of one fetch of one partition.
    WeightedDraws = 3,
}

/// The ChaCha8 stream keyed by
/// `seed ‖ epoch ‖ domain ‖ value`, each a little-endian `u64`.
pub(crate) fn stream(seed: u64, epoch: u64, domain: Domain, value: u64) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(&(domain as u64).to_le_bytes());
    key[24..].copy_from_slice(&value.to_le_bytes());
    ChaCha8Rng::from_seed(key)
}

/// A uniform integer in `[0, n)`, exactly (Lemire's nearly-divisionless
/// method): multiply a 64-bit draw by `n` and keep the high 64 bits,
/// rejecting the draws whose low 64 bits fall below `2^64 mod n`, which
/// would make some results more likely than others. Usually one draw.
pub(crate) fn below(rng: &mut impl RngCore, n: u64) -> u64 {
    debug_assert!(n > 0, "below(0) has no result");
    let mut product = u128::from(rng.next_u64()) * u128::from(n);
    if (product as u64) < n {
        // 2^64 mod n, computed in 64 bits as (2^64 − n) mod n.
        let threshold = n.wrapping_neg() % n;
        while (product as u64) < threshold {
            product = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (product >> 64) as u64
}

/// A uniform float in `[0, 1)`: the top 53 bits of a draw, times 2^-53.
pub(crate) fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Shuffles `items` in place (Fisher–Yates, from the back): for i = len−1
/// down to 1, swap item i with item `below(i + 1)`.
pub(crate) fn shuffle<T>(rng: &mut impl RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = below(rng, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_layout_is_pinned() {
        // Pins ChaCha8 itself, the key layout and the word order of
        // next_u64 (checked against an independent ChaCha8 written from the
        // specification): if this fails, every stream changed.
        let mut rng = stream(42, 3, Domain::FetchShuffle, (1 << 32) | 5);
        let first: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(first, PINNED_STREAM);
    }

    const PINNED_STREAM: [u64; 3] = [
        12_278_098_218_108_223_744,
        17_822_329_095_871_031_157,
        4_822_773_334_438_236_973,
    ];

    #[test]
    fn each_key_field_changes_the_stream() {
        let first = |seed, epoch, domain, value| stream(seed, epoch, domain, value).next_u64();
        let base = first(1, 2, Domain::Blocks, 3);
        assert_ne!(base, first(9, 2, Domain::Blocks, 3));
        assert_ne!(base, first(1, 9, Domain::Blocks, 3));
        assert_ne!(base, first(1, 2, Domain::FetchShuffle, 3));
        assert_ne!(base, first(1, 2, Domain::Blocks, 9));
    }

    /// Replays fixed words, to drive `below` through its rejection branch.
    struct Words(Vec<u64>);

    impl RngCore for Words {
        fn next_u32(&mut self) -> u32 {
            unreachable!("only next_u64 is used")
        }
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
        fn fill_bytes(&mut self, _: &mut [u8]) {
            unreachable!("only next_u64 is used")
        }
    }

    #[test]
    fn below_rejects_the_biased_draws() {
        // n = 3: 2^64 mod 3 = 1, so the draw 0 (low product 0 < 1) is
        // rejected and the next one is used.
        let mut words = Words(vec![0, u64::MAX]);
        assert_eq!(below(&mut words, 3), 2);
        assert!(words.0.is_empty());
        // A draw whose low part is below n but not below the threshold is
        // kept: 3·(2^64 + 2)/3 = 2^64 + 2 has low part 2 and high part 1.
        let mut words = Words(vec![(u64::MAX / 3) + 1]);
        assert_eq!(below(&mut words, 3), 1);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = stream(0, 0, Domain::Blocks, 0);
        for n in [1, 2, 3, 7, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(below(&mut rng, n) < n);
            }
        }
        let mut seen = [false; 7];
        (0..200).for_each(|_| seen[below(&mut rng, 7) as usize] = true);
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn shuffle_permutes() {
        let mut rng = stream(0, 0, Domain::FetchShuffle, 0);
        let mut items: Vec<u32> = (0..100).collect();
        shuffle(&mut rng, &mut items);
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
    }
}
