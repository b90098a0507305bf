//! Geneformer's rank-value encoding of one cell (docs/protocol.md): each
//! gene's count divided by the cell's total over all stored genes, times
//! 10,000, divided by the gene's median; genes by that value, descending.

use super::total_order;

/// Geneformer's normalisation target.
const TARGET_SUM: f64 = 10_000.0;

/// A gene of a cell with its normalised value, as one integer whose order
/// is the rank order: value descending (in `f64::total_cmp`'s order), then
/// output position ascending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ranked(u128);

impl Ranked {
    pub(crate) fn new(value: f64, position: u32) -> Self {
        Self(u128::from(!total_order::key(value)) << 32 | u128::from(position))
    }

    /// The gene's output position.
    pub(crate) fn position(self) -> u32 {
        self.0 as u32
    }
}

/// `count / total × 10,000 / median`, left to right in f64, as
/// Geneformer's tokenizer computes it (so equal inputs rank alike there
/// and here).
#[inline]
pub(crate) fn normalised(count: f64, total: f64, median: f64) -> f64 {
    count / total * TARGET_SUM / median
}

/// Leaves the first `limit` of `genes` in rank order: value descending,
/// ties by output position ascending. When the cell has more genes than
/// that, a selection first drops the rest without sorting them.
pub(crate) fn rank(genes: &mut Vec<Ranked>, limit: usize) {
    if genes.len() > limit {
        if limit == 0 {
            genes.clear();
            return;
        }
        genes.select_nth_unstable(limit - 1);
        genes.truncate(limit);
    }
    genes.sort_unstable();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranked(values: &[f64]) -> Vec<Ranked> {
        values
            .iter()
            .enumerate()
            .map(|(position, &value)| Ranked::new(value, position as u32))
            .collect()
    }

    fn positions(genes: &[Ranked]) -> Vec<u32> {
        genes.iter().map(|gene| gene.position()).collect()
    }

    #[test]
    fn genes_rank_by_value_descending_and_ties_by_position() {
        let mut genes = ranked(&[1.0, 3.0, 2.0, 3.0, 0.5]);
        rank(&mut genes, 10);
        assert_eq!(positions(&genes), [1, 3, 2, 0, 4]);
    }

    #[test]
    fn only_the_first_limit_genes_are_kept_ties_included_by_position() {
        let mut genes = ranked(&[1.0, 3.0, 2.0, 3.0, 0.5, 3.0]);
        rank(&mut genes, 2);
        assert_eq!(positions(&genes), [1, 3]);
        let mut genes = ranked(&[5.0, 4.0]);
        rank(&mut genes, 2);
        assert_eq!(positions(&genes), [0, 1], "exactly the limit: all kept");
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
        ];
        let mut genes = ranked(&values);
        rank(&mut genes, values.len());
        let mut expected: Vec<usize> = (0..values.len()).collect();
        expected.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
        let expected: Vec<u32> = expected.into_iter().map(|i| i as u32).collect();
        assert_eq!(positions(&genes), expected);
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
