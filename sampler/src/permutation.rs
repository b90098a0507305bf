//! A keyed pseudo-random permutation of `[0, len)` that is evaluated at one
//! index at a time in O(1) time and memory, so an epoch's block order never
//! needs an array of the blocks.
//!
//! A balanced Feistel network permutes the power-of-4 domain `[0, 4^h)`
//! (the smallest with `h ≥ 1` and `4^h ≥ len`); cycle walking (apply it
//! again until the value lands below `len`) restricts it to `[0, len)`.
//! As `4^h < 4·len`, a walk takes fewer than 4 steps on average.

use rand::RngCore;

/// Feistel rounds. Four make a strong pseudo-random permutation of large
/// domains, but on tiny ones (a few blocks: 2-bit halves) six or eight
/// rounds still place some values measurably unevenly across keys; twelve
/// show no bias over 2·10⁶ keys and cost well under a microsecond.
pub(crate) const ROUNDS: usize = 12;

/// A bijection of `[0, len)`, `len ≥ 1`.
#[derive(Debug, Clone)]
pub(crate) struct Permutation {
    len: u64,
    half_bits: u32,
    keys: [u64; ROUNDS],
}

impl Permutation {
    /// The permutation of `[0, len)` with round keys drawn as the next
    /// [`ROUNDS`] `next_u64` of `rng`.
    pub(crate) fn new(len: u64, rng: &mut impl RngCore) -> Self {
        assert!(len > 0, "a permutation needs a non-empty domain");
        let bits = u64::BITS - (len - 1).leading_zeros();
        Permutation {
            len,
            half_bits: bits.div_ceil(2).max(1),
            keys: std::array::from_fn(|_| rng.next_u64()),
        }
    }

    /// The image of `x < len`.
    pub(crate) fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.len);
        self.walk(x, Self::encrypt)
    }

    /// The `x` whose image is `y < len`.
    pub(crate) fn invert(&self, y: u64) -> u64 {
        debug_assert!(y < self.len);
        self.walk(y, Self::decrypt)
    }

    /// Cycle walking: `step` permutes the whole power-of-4 domain, so
    /// repeating it from a value below `len` comes back below `len`.
    fn walk(&self, mut x: u64, step: fn(&Self, u64) -> u64) -> u64 {
        loop {
            x = step(self, x);
            if x < self.len {
                return x;
            }
        }
    }

    fn mask(&self) -> u64 {
        u64::MAX >> (u64::BITS - self.half_bits)
    }

    /// The round function: the key-mixed right half, hashed, cut to a half.
    fn round(&self, key: u64, half: u64) -> u64 {
        mix(half ^ key) & self.mask()
    }

    /// `(L, R) → (R, L ⊕ round(key_i, R))` for i = 0, 1, …
    fn encrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for &key in &self.keys {
            (left, right) = (right, left ^ self.round(key, right));
        }
        (left << self.half_bits) | right
    }

    /// The rounds of [`encrypt`](Self::encrypt) undone, last first.
    fn decrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for &key in self.keys.iter().rev() {
            (left, right) = (right ^ self.round(key, left), left);
        }
        (left << self.half_bits) | right
    }
}

/// The SplitMix64 finaliser: a bijection of `u64` in which every input bit
/// affects every output bit. Also the engine's per-gene keys (scGPT's
/// seeded choice), so the protocol has one mixing function.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Domain};

    fn permutation(len: u64, seed: u64) -> Permutation {
        Permutation::new(len, &mut stream(seed, 0, Domain::Blocks, 0))
    }

    fn assert_bijection(len: u64, seed: u64) {
        let p = permutation(len, seed);
        let mut seen = vec![false; len as usize];
        for x in 0..len {
            let y = p.apply(x);
            assert!(!seen[y as usize], "len {len}: {y} hit twice");
            seen[y as usize] = true;
            assert_eq!(p.invert(y), x, "len {len}");
        }
    }

    #[test]
    fn small_domains_are_permuted_exactly() {
        for len in 1..=300 {
            assert_bijection(len, len);
        }
        for len in [1000, 1023, 1024, 1025, 4095, 4096, 4097, 65_537, 1_000_003] {
            assert_bijection(len, 7);
        }
    }

    #[test]
    fn large_domains_invert_where_spot_checked() {
        for len in [10_000_000, 100_000_001, 1 << 32, (1 << 32) + 1, u64::MAX] {
            let p = permutation(len, 3);
            let mut rng = stream(4, 0, Domain::Blocks, 0);
            for _ in 0..2_000 {
                let x = rng.next_u64() % len;
                let y = p.apply(x);
                assert!(y < len);
                assert_eq!(p.invert(y), x, "len {len}");
            }
        }
    }

    #[test]
    fn the_domain_is_the_smallest_power_of_4() {
        let half_bits = |len| permutation(len, 0).half_bits;
        assert_eq!(half_bits(1), 1);
        assert_eq!(half_bits(4), 1);
        assert_eq!(half_bits(5), 2);
        assert_eq!(half_bits(16), 2);
        assert_eq!(half_bits(17), 3);
        assert_eq!(half_bits(u64::MAX), 32);
    }

    #[test]
    fn keys_change_the_permutation() {
        let order = |seed| {
            let p = permutation(100, seed);
            (0..100).map(|x| p.apply(x)).collect::<Vec<_>>()
        };
        assert_ne!(order(1), order(2));
        assert_ne!(order(1), (0..100).collect::<Vec<_>>());
    }
}
