//! scGPT's value binning of one cell (docs/protocol.md): the cell's
//! non-zero values binned by their own quantiles, as scGPT's `binning`
//! computes them with numpy (`np.quantile` at `np.linspace(0, 1, n_bins −
//! 1)`, method "linear", then `np.digitize`), reproduced operation for
//! operation so that the edges are the same f64 bits; and the seeded
//! choice of genes for a cell with more than fit.

use cellflight_sampler::mix;

use super::key_order::{KeyOrder, Keyed};
use super::total_order;

/// SplitMix64's increment (the golden ratio).
const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// The quantile levels of a cell's bin edges: numpy's `linspace(0, 1,
/// n_bins − 1)` (`i × (1 / (num − 1))`, the last exactly 1; one level, 0,
/// for `n_bins` = 2).
pub(crate) fn levels(n_bins: u32) -> Vec<f64> {
    let num = n_bins.saturating_sub(1).max(1) as usize;
    if num == 1 {
        return vec![0.0];
    }
    let step = 1.0 / (num - 1) as f64;
    let mut levels: Vec<f64> = (0..num).map(|i| i as f64 * step).collect();
    levels[num - 1] = 1.0;
    levels
}

/// numpy's `_lerp`: from `a` for `t` below one half, from `b` above, so
/// that the result is exact at both ends.
#[inline]
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// Into `edges`, `np.quantile(sorted, levels, method="linear")` of the
/// ascending, non-empty `sorted`: at virtual index `(n − 1) × q`, the
/// interpolation between its neighbours (the last value from index n − 1
/// on).
pub(crate) fn edges_into(sorted: &[f64], levels: &[f64], edges: &mut Vec<f64>) {
    edges.clear();
    let last = sorted.len() - 1;
    edges.extend(levels.iter().map(|&level| {
        let virtual_index = last as f64 * level;
        if virtual_index >= last as f64 {
            return sorted[last];
        }
        let below = virtual_index.floor();
        let index = below as usize;
        lerp(sorted[index], sorted[index + 1], virtual_index - below)
    }));
}

/// `np.digitize(value, edges)` (right=False) for non-decreasing edges,
/// of ascending values, in one walk along the edges: how many edges are at
/// most the value. Non-zero values get 1 to `edges.len()`, equal edges
/// resolved to the highest bin.
#[derive(Debug)]
struct AscendingBins<'a> {
    edges: &'a [f64],
    /// How many edges are at most the last value.
    at_most: usize,
}

impl<'a> AscendingBins<'a> {
    fn new(edges: &'a [f64]) -> Self {
        Self { edges, at_most: 0 }
    }

    /// The bin of `value`, at least the last value binned.
    #[inline]
    fn bin(&mut self, value: f64) -> u16 {
        while self
            .edges
            .get(self.at_most)
            .is_some_and(|&edge| edge <= value)
        {
            self.at_most += 1;
        }
        // At most 65,535 edges (n_bins ≤ 65,536).
        self.at_most as u16
    }
}

/// A cell's non-zero genes being binned, in output order; the buffers are
/// reused from cell to cell (each holds at most a cell's entries).
#[derive(Debug, Default)]
pub(crate) struct Binning {
    /// Keys: the values' [`total_order::key`]s.
    genes: Vec<Keyed>,
    order: KeyOrder,
    sorted: Vec<f64>,
    edges: Vec<f64>,
    /// Each gene's bin.
    bins: Vec<u16>,
    /// The genes' seeded keys, by place.
    seeded: Vec<u64>,
    /// The seeded keys, reordered while selecting.
    selecting: Vec<u64>,
}

impl Binning {
    /// Starts a cell.
    pub(crate) fn clear(&mut self) {
        self.genes.clear();
    }

    /// Adds the non-zero gene at output `position`.
    #[inline]
    pub(crate) fn push(&mut self, position: u32, value: f64) {
        let key = total_order::key(value);
        self.genes.push(Keyed { position, key });
    }

    /// Puts the genes, pushed in any order, in output order.
    pub(crate) fn order_by_position(&mut self) {
        self.genes.sort_unstable_by_key(|gene| gene.position);
    }

    /// Bins every gene by the cell's quantiles at `levels`.
    pub(crate) fn bin(&mut self, levels: &[f64]) {
        self.bins.clear();
        if self.genes.is_empty() {
            return;
        }
        self.order.sort(&self.genes);
        let genes = &self.genes;
        self.sorted.clear();
        (self.sorted).extend(
            self.order
                .places()
                .map(|place| total_order::value(genes[place].key)),
        );
        edges_into(&self.sorted, levels, &mut self.edges);
        self.bins.resize(genes.len(), 0);
        let mut bins = AscendingBins::new(&self.edges);
        for (place, &value) in self.order.places().zip(&self.sorted) {
            self.bins[place] = bins.bin(value);
        }
    }

    /// Keeps, of more than `limit` genes, the `limit` of smallest
    /// [`gene_key`] under `cell_key`, still in output order.
    pub(crate) fn keep(&mut self, limit: usize, cell_key: u64) {
        if self.genes.len() <= limit {
            return;
        }
        if limit == 0 {
            self.genes.clear();
            self.bins.clear();
            return;
        }
        self.seeded.clear();
        (self.seeded).extend(
            self.genes
                .iter()
                .map(|gene| gene_key(cell_key, gene.position)),
        );
        self.selecting.clone_from(&self.seeded);
        // Keys are distinct: exactly `limit` genes have a key at most the
        // `limit`-th smallest, kept in place in output order.
        let (_, &mut largest_kept, _) = self.selecting.select_nth_unstable(limit - 1);
        let mut slot = 0;
        for (place, &key) in self.seeded.iter().enumerate() {
            if key <= largest_kept {
                self.genes[slot] = self.genes[place];
                self.bins[slot] = self.bins[place];
                slot += 1;
            }
        }
        self.genes.truncate(limit);
        self.bins.truncate(limit);
    }

    /// The genes' (output position, bin), in output order.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = (u32, u16)> + '_ {
        (self.genes.iter().zip(&self.bins)).map(|(gene, &bin)| (gene.position, bin))
    }
}

/// SplitMix64's output for state `x`.
#[inline]
pub(crate) fn splitmix64(x: u64) -> u64 {
    mix(x.wrapping_add(GOLDEN_GAMMA))
}

/// What a cell's gene keys derive from: `splitmix64(splitmix64(
/// splitmix64(seed) ⊕ epoch) ⊕ cell_id)`.
pub(crate) fn cell_key(seed: u64, epoch: u64, cell_id: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ cell_id)
}

/// The key of the gene at output `position` of a cell: the genes kept are
/// those of smallest key. Distinct positions have distinct keys.
#[inline]
pub(crate) fn gene_key(cell_key: u64, position: u32) -> u64 {
    splitmix64(cell_key ^ u64::from(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_numpys_linspace() {
        assert_eq!(levels(2), [0.0]);
        assert_eq!(levels(3), [0.0, 1.0]);
        assert_eq!(levels(5), [0.0, 1.0 / 3.0, 2.0 * (1.0 / 3.0), 1.0]);
        // np.linspace(0, 1, 50)[7] in numpy is 7 * (1/49), not 7/49.
        assert_eq!(levels(51)[7].to_bits(), (7.0 * (1.0 / 49.0f64)).to_bits());
    }

    #[test]
    fn edges_interpolate_between_sorted_values_like_np_quantile() {
        let mut edges = Vec::new();
        edges_into(&[1.0, 2.0, 4.0, 8.0], &levels(6), &mut edges);
        // np.quantile([1, 2, 4, 8], np.linspace(0, 1, 5))
        assert_eq!(edges, [1.0, 1.75, 3.0, 5.0, 8.0]);
        edges_into(&[3.0], &levels(4), &mut edges);
        assert_eq!(edges, [3.0, 3.0, 3.0], "one value: every edge is it");
    }

    #[test]
    fn a_value_bins_by_the_edges_at_most_it_and_equal_edges_take_the_highest() {
        let edges = [1.0, 1.0, 1.0, 2.0, 5.0];
        let mut bins = AscendingBins::new(&edges);
        let values = [0.5, 1.0, 1.0, 1.5, 2.0, 4.9, 5.0, 7.0];
        let binned: Vec<u16> = values.iter().map(|&value| bins.bin(value)).collect();
        assert_eq!(binned, [0, 3, 3, 3, 4, 4, 5, 5]);
    }

    /// A cell's (position, bin) after binning `values` (positions 0, 1, …)
    /// into 5 bins and keeping `limit`.
    fn binned(values: &[f64], limit: usize) -> Vec<(u32, u16)> {
        let mut binning = Binning::default();
        for (position, &value) in values.iter().enumerate() {
            binning.push(position as u32, value);
        }
        binning.bin(&levels(5));
        binning.keep(limit, cell_key(7, 1, 3));
        binning.tokens().collect()
    }

    #[test]
    fn genes_keep_their_order_and_bin_by_the_cells_quantiles() {
        // np.quantile([1, 2, 4, 8], [0, 1/3, 2/3, 1]) = [1, 2, 4, 8].
        assert_eq!(
            binned(&[8.0, 1.0, 4.0, 2.0], 10),
            [(0, 4), (1, 1), (2, 3), (3, 2)]
        );
        assert_eq!(binned(&[], 10), []);
    }

    #[test]
    fn the_genes_kept_are_those_of_smallest_seeded_key_with_their_bins() {
        let values = [8.0, 1.0, 4.0, 2.0, 3.0];
        let all = binned(&values, 5);
        let kept = binned(&values, 2);
        let key = cell_key(7, 1, 3);
        let mut by_key: Vec<u32> = (0..5).collect();
        by_key.sort_by_key(|&position| gene_key(key, position));
        let mut wanted: Vec<u32> = by_key[..2].to_vec();
        wanted.sort_unstable();
        let expected: Vec<(u32, u16)> = wanted.iter().map(|&p| all[p as usize]).collect();
        assert_eq!(kept, expected, "bins are those of the whole cell");
        assert_eq!(binned(&values, 0), []);
    }

    #[test]
    fn splitmix64_is_the_reference_generator() {
        // The first output of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let key = cell_key(1, 2, 3);
        assert_ne!(gene_key(key, 0), gene_key(key, 1));
        assert_ne!(cell_key(1, 2, 3), cell_key(1, 3, 3), "the epoch matters");
    }
}
