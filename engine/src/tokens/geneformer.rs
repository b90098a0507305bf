//! Geneformer's rank-value encoding of one cell (docs/protocol.md): each
//! gene's count divided by the cell's total over all stored genes, times
//! 10,000, divided by the gene's median; genes by that value, descending.

use super::key_order::{KeyOrder, Keyed};
use super::total_order;

/// Geneformer's normalisation target.
const TARGET_SUM: f64 = 10_000.0;

/// `count / total × 10,000 / median`, left to right in f64, as
/// Geneformer's tokenizer computes it (so equal inputs rank alike there
/// and here).
#[inline]
pub(crate) fn normalised(count: f64, total: f64, median: f64) -> f64 {
    count / total * TARGET_SUM / median
}

/// A cell's genes being ranked; the buffers are reused from cell to cell.
#[derive(Debug, Default)]
pub(crate) struct Ranking {
    genes: Vec<Keyed>,
    order: KeyOrder,
}

impl Ranking {
    /// Starts a cell.
    pub(crate) fn clear(&mut self) {
        self.genes.clear();
    }

    /// Adds the gene at output `position`, of normalised `value`.
    #[inline]
    pub(crate) fn push(&mut self, position: u32, value: f64) {
        // Ascending keys are descending values, in `f64::total_cmp`'s order.
        let key = !total_order::key(value);
        self.genes.push(Keyed { position, key });
    }

    /// The output positions of the cell's first `limit` genes in rank
    /// order: value descending, ties by position ascending. The genes were
    /// pushed by ascending position when `by_position`.
    pub(crate) fn ranked(
        &mut self,
        by_position: bool,
        limit: usize,
    ) -> impl Iterator<Item = u32> + '_ {
        if !by_position {
            self.genes.sort_unstable_by_key(|gene| gene.position);
        }
        self.order.sort(&self.genes);
        let genes = &self.genes;
        (self.order.places().take(limit)).map(move |place| genes[place].position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The positions `ranked` gives for genes 0, 1, … of `values`, pushed
    /// in the order `pushed` (positions) or by position.
    fn rank(values: &[f64], pushed: Option<&[u32]>, limit: usize) -> Vec<u32> {
        let by_position: Vec<u32> = (0..values.len() as u32).collect();
        let mut ranking = Ranking::default();
        for &position in pushed.unwrap_or(&by_position) {
            ranking.push(position, values[position as usize]);
        }
        ranking.ranked(pushed.is_none(), limit).collect()
    }

    #[test]
    fn genes_rank_by_value_descending_and_ties_by_position() {
        assert_eq!(rank(&[1.0, 3.0, 2.0, 3.0, 0.5], None, 10), [1, 3, 2, 0, 4]);
    }

    #[test]
    fn only_the_first_limit_genes_are_kept_ties_included_by_position() {
        assert_eq!(rank(&[1.0, 3.0, 2.0, 3.0, 0.5, 3.0], None, 2), [1, 3]);
        assert_eq!(rank(&[5.0, 4.0], None, 2), [0, 1], "exactly the limit");
        assert_eq!(rank(&[5.0, 4.0], None, 0), [0u32; 0]);
    }

    #[test]
    fn genes_pushed_out_of_position_order_rank_alike() {
        let values = [1.0, 3.0, 2.0, 3.0, 0.5, 3.0];
        let pushed = [5, 3, 0, 4, 1, 2];
        assert_eq!(rank(&values, Some(&pushed), 6), [1, 3, 5, 2, 0, 4]);
    }

    #[test]
    fn the_rank_order_is_total_cmp_descending_then_position() {
        let values = [
            0.0,
            -0.0,
            1e-300,
            2.5,
            -3.0,
            f64::INFINITY,
            f64::MAX,
            2.5,
            -1e-300,
            // Differs from 2.5 in the last bit only: below the bits a key
            // keeps beside its place.
            f64::from_bits(2.5f64.to_bits() + 1),
        ];
        let mut expected: Vec<u32> = (0..values.len() as u32).collect();
        expected.sort_by(|&a, &b| {
            values[b as usize]
                .total_cmp(&values[a as usize])
                .then(a.cmp(&b))
        });
        assert_eq!(rank(&values, None, values.len()), expected);
    }

    #[test]
    fn the_value_is_computed_left_to_right_as_geneformer_does() {
        let (count, total, median) = (3.0, 7.0, 0.3);
        assert_eq!(
            normalised(count, total, median).to_bits(),
            (((count / total) * 10_000.0) / median).to_bits()
        );
    }
}
