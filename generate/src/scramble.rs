//! A seeded permutation of `0..n` computed arithmetically, both ways, with
//! no table: it decides where each popularity rank lives in the gene index.
//! A table would be 250 KB at 62,710 genes, and looking genes up in it at
//! random (the rare genes) missed the cache on most draws.
//!
//! A bijection of the k-bit integers (k the bits of n - 1) is built from
//! invertible steps (xor with a key, multiplication by an odd constant,
//! xor-shift by more than k/2); applying it until the result is below n
//! ("cycle walking") makes a bijection of `0..n`, in under two steps on
//! average as 2^k < 2n.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

pub(crate) struct Scramble {
    n: u64,
    mask: u64,
    shift: u32,
    key: u64,
    multiplier: u64,
    inverse: u64,
}

impl Scramble {
    pub(crate) fn new(n: u32, rng: &mut ChaCha8Rng) -> Self {
        // At least 2 bits, so the shift (more than half) is less than all.
        let bits = (u64::from(n.max(2)) - 1).ilog2().max(1) + 1;
        let mask = (1u64 << bits) - 1;
        let multiplier = rng.next_u64() | 1;
        Self {
            n: u64::from(n),
            mask,
            shift: bits / 2 + 1,
            key: rng.next_u64() & mask,
            multiplier,
            inverse: odd_inverse(multiplier),
        }
    }

    /// The image of `x < n`.
    #[inline]
    pub(crate) fn forward(&self, x: u32) -> u32 {
        let mut y = u64::from(x);
        loop {
            y = self.step(y);
            if y < self.n {
                return y as u32;
            }
        }
    }

    /// The `x` whose image is `y < n`.
    #[inline]
    pub(crate) fn backward(&self, y: u32) -> u32 {
        let mut x = u64::from(y);
        loop {
            x = self.unstep(x);
            if x < self.n {
                return x as u32;
            }
        }
    }

    #[inline]
    fn step(&self, x: u64) -> u64 {
        let x = (x ^ self.key).wrapping_mul(self.multiplier) & self.mask;
        x ^ (x >> self.shift)
    }

    #[inline]
    fn unstep(&self, y: u64) -> u64 {
        // A xor-shift by more than half the bits undoes itself.
        let x = y ^ (y >> self.shift);
        (x.wrapping_mul(self.inverse) & self.mask) ^ self.key
    }
}

/// The inverse of odd `a` modulo 2^64 (Newton's iteration doubles the
/// correct low bits each step: 3 bits are right to start with).
fn odd_inverse(a: u64) -> u64 {
    let mut inverse = a;
    for _ in 0..5 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(inverse)));
    }
    inverse
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};

    #[test]
    fn is_a_permutation_undone_by_backward() {
        let mut rng = stream(3, Purpose::GeneRanks, 0);
        for n in [1u32, 2, 3, 4, 5, 17, 1000, 62_710, 65_536] {
            let scramble = Scramble::new(n, &mut rng);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = scramble.forward(x);
                assert!(!seen[y as usize], "{y} twice for n = {n}");
                seen[y as usize] = true;
                assert_eq!(scramble.backward(y), x);
            }
        }
    }

    #[test]
    fn scatters_neighbours() {
        let scramble = Scramble::new(62_710, &mut stream(0, Purpose::GeneRanks, 0));
        let first: Vec<u32> = (0..10).map(|x| scramble.forward(x)).collect();
        let spread = first.iter().max().unwrap() - first.iter().min().unwrap();
        assert!(spread > 10_000, "the top ranks land far apart: {first:?}");
    }

    #[test]
    fn odd_inverses_invert() {
        for a in [1u64, 3, 0x9E37_79B9_7F4A_7C15, u64::MAX] {
            assert_eq!(a.wrapping_mul(odd_inverse(a)), 1);
        }
    }
}
