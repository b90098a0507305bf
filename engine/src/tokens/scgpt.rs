//! scGPT's value binning of one cell (docs/protocol.md): the cell's
//! non-zero values binned by their own quantiles, as scGPT's `binning`
//! computes them with numpy (`np.quantile` at `np.linspace(0, 1, n_bins −
//! 1)`, method "linear", then `np.digitize`), reproduced operation for
//! operation so that the edges are the same f64 bits; and the seeded
//! choice of genes for a cell with more than fit.

use cellflight_sampler::mix;

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

/// `np.digitize(value, edges)` (right=False) for non-decreasing edges:
/// how many edges are at most `value`. Non-zero values get 1 to
/// `edges.len()`, equal edges resolved to the highest bin.
#[inline]
pub(crate) fn bin(value: f64, edges: &[f64]) -> u16 {
    // At most 65,535 edges (n_bins ≤ 65,536).
    edges.partition_point(|&edge| edge <= value) as u16
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
        assert_eq!(bin(1.0, &edges), 3);
        assert_eq!(bin(1.5, &edges), 3);
        assert_eq!(bin(2.0, &edges), 4);
        assert_eq!(bin(5.0, &edges), 5, "the largest value: the last bin");
        assert_eq!(bin(0.5, &edges), 0);
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
