//! Gene popularity: which gene a draw picks when it is not steered by the
//! cell's cell line or drug.
//!
//! The gene of popularity rank r is drawn with probability proportional to
//! ∫_r^{r+1} dx / (x + OFFSET): a Zipf law (weight ≈ 1/(r + OFFSET + ½)) with
//! a flattened head. Ranks are drawn by inverting its distribution function,
//! r = ⌊OFFSET·e^{uL} − OFFSET⌋ for uniform u, through a table of 4,096
//! equal-probability buckets with linear interpolation inside each (the
//! exponential is all but linear across 1/4,096 of its range). The table is
//! 32 KB and stays cached, where an alias table over all genes would be
//! 500 KB and miss the cache on nearly every draw.

use rand_chacha::ChaCha8Rng;

use crate::scramble::Scramble;

/// Flattens the head: rank 0 is ~1% of draws at 62,710 genes, not ~9%.
const OFFSET: f64 = 10.0;
const BUCKET_BITS: u32 = 12;
const BUCKETS: usize = 1 << BUCKET_BITS;

pub(crate) struct Popularity {
    /// `BUCKETS + 1` continuous rank positions: bucket b spans [edges[b], edges[b+1]).
    edges: Vec<f64>,
    /// Rank to gene: a seeded permutation, so popular genes are scattered
    /// over the gene index as in a real annotation.
    ranks: Scramble,
    genes: u32,
}

impl Popularity {
    pub(crate) fn new(genes: u32, rng: &mut ChaCha8Rng) -> Self {
        let range = ((f64::from(genes) + OFFSET) / OFFSET).ln();
        let edges = (0..=BUCKETS)
            .map(|b| OFFSET * (b as f64 / BUCKETS as f64 * range).exp() - OFFSET)
            .collect();
        Self {
            edges,
            ranks: Scramble::new(genes, rng),
            genes,
        }
    }

    /// The popularity rank of `gene` (0 is the most popular).
    #[inline]
    pub(crate) fn rank_of(&self, gene: u32) -> u32 {
        self.ranks.backward(gene)
    }

    /// One draw from the low 56 bits of `bits`: 12 choose the bucket, 44 the
    /// place inside it.
    #[inline]
    pub(crate) fn sample(&self, bits: u64) -> u32 {
        let bucket = ((bits >> 44) & (BUCKETS as u64 - 1)) as usize;
        let within = (bits & ((1 << 44) - 1)) as f64 * (1.0 / (1u64 << 44) as f64);
        let (low, high) = (self.edges[bucket], self.edges[bucket + 1]);
        // Truncation is floor here (positions are non-negative); the min
        // guards the top edge against rounding.
        let rank = ((low + within * (high - low)) as u32).min(self.genes - 1);
        self.ranks.forward(rank)
    }
}

#[cfg(test)]
mod tests {
    use rand::RngCore;

    use super::*;
    use crate::rng::{stream, Purpose};

    #[test]
    fn ranks_follow_the_flattened_zipf_law() {
        let genes = 1000;
        let mut rng = stream(0, Purpose::GeneRanks, 0);
        let popularity = Popularity::new(genes, &mut rng);
        let mut counts = vec![0u32; genes as usize];
        let draws = 400_000;
        for _ in 0..draws {
            counts[popularity.sample(rng.next_u64()) as usize] += 1;
        }
        let total = ((f64::from(genes) + OFFSET) / OFFSET).ln();
        for rank in [0u32, 1, 10, 100, 999] {
            let r = f64::from(rank);
            let expected = ((r + 1.0 + OFFSET) / (r + OFFSET)).ln() / total * f64::from(draws);
            let gene = popularity.ranks.forward(rank);
            assert_eq!(popularity.rank_of(gene), rank);
            let seen = f64::from(counts[gene as usize]);
            // Within 4 standard deviations of a Poisson count.
            let tolerance = 4.0 * expected.sqrt();
            assert!(
                (seen - expected).abs() < tolerance,
                "rank {rank}: {seen} for {expected}"
            );
        }
    }

    #[test]
    fn every_draw_is_a_gene() {
        let mut rng = stream(0, Purpose::GeneRanks, 0);
        for genes in [1, 2, 3, 62_710] {
            let popularity = Popularity::new(genes, &mut rng);
            assert!(popularity.sample(u64::MAX) < genes);
            assert!(popularity.sample(0) < genes);
        }
    }
}
