//! Per-cell and per-gene statistics, accumulated while rows stream past so
//! no second pass over the matrix is needed.

/// Per-gene sums over every cell written so far.
pub(crate) struct GeneStats {
    /// One record a gene, so adding a value touches one cache line.
    genes: Vec<GeneSums>,
}

#[derive(Clone, Copy, Default)]
struct GeneSums {
    n_cells: u64,
    sum: f64,
    sum_of_squares: f64,
}

impl GeneStats {
    pub(crate) fn new(n_genes: usize) -> Self {
        Self {
            genes: vec![GeneSums::default(); n_genes],
        }
    }

    pub(crate) fn add(&mut self, gene: usize, value: f64) {
        let sums = &mut self.genes[gene];
        sums.n_cells += 1;
        sums.sum += value;
        sums.sum_of_squares += value * value;
    }

    pub(crate) fn n_cells(&self) -> Vec<u64> {
        self.genes.iter().map(|g| g.n_cells).collect()
    }

    /// Mean over all `total_cells` (zeros included).
    pub(crate) fn means(&self, total_cells: u64) -> Vec<f64> {
        let n = total_cells as f64;
        self.genes.iter().map(|g| g.sum / n).collect()
    }

    /// Variance over all `total_cells` with ddof = 1, as scanpy's `mean_var`.
    pub(crate) fn variances(&self, total_cells: u64) -> Vec<f64> {
        let n = total_cells as f64;
        self.genes
            .iter()
            .map(
                |&GeneSums {
                     sum,
                     sum_of_squares: squares,
                     ..
                 }| {
                    let variance = (squares - sum * sum / n) / (n - 1.0);
                    // Rounding can push a zero variance below 0; NaN (one cell) stays NaN.
                    if variance < 0.0 {
                        0.0
                    } else {
                        variance
                    }
                },
            )
            .collect()
    }
}
