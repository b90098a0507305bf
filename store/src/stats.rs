//! Per-cell and per-gene statistics, accumulated while rows stream past so
//! no second pass over the matrix is needed.

/// Per-gene sums over every cell written so far.
pub(crate) struct GeneStats {
    n_cells: Vec<u64>,
    sum: Vec<f64>,
    sum_of_squares: Vec<f64>,
}

impl GeneStats {
    pub(crate) fn new(n_genes: usize) -> Self {
        Self {
            n_cells: vec![0; n_genes],
            sum: vec![0.0; n_genes],
            sum_of_squares: vec![0.0; n_genes],
        }
    }

    pub(crate) fn add(&mut self, gene: usize, value: f64) {
        self.n_cells[gene] += 1;
        self.sum[gene] += value;
        self.sum_of_squares[gene] += value * value;
    }

    pub(crate) fn n_cells(&self) -> &[u64] {
        &self.n_cells
    }

    /// Mean over all `total_cells` (zeros included).
    pub(crate) fn means(&self, total_cells: u64) -> Vec<f64> {
        let n = total_cells as f64;
        self.sum.iter().map(|sum| sum / n).collect()
    }

    /// Variance over all `total_cells` with ddof = 1, as scanpy's `mean_var`.
    pub(crate) fn variances(&self, total_cells: u64) -> Vec<f64> {
        let n = total_cells as f64;
        self.sum
            .iter()
            .zip(&self.sum_of_squares)
            .map(|(sum, squares)| {
                let variance = (squares - sum * sum / n) / (n - 1.0);
                // Rounding can push a zero variance below 0; NaN (one cell) stays NaN.
                if variance < 0.0 {
                    0.0
                } else {
                    variance
                }
            })
            .collect()
    }
}
