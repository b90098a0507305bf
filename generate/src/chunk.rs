//! Chunks: runs of [`CHUNK_CELLS`] consecutive cells, each made from its own
//! random streams (see [`crate::rng`]), so chunks can be made on any thread,
//! in any order, and come out the same.

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;
use cellflight_store::{CellRows, CsrRows};
use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::design::{Design, Well, N_CELL_LINES};
use crate::gene_set::GeneSet;
use crate::model::{Model, TotalsLaw};
use crate::obs::{ObsRows, ObsTable};
use crate::rng::{below, stream, Purpose};

/// Cells per chunk. Part of the format of the generated data: changing it
/// changes every dataset. At ~1,500 genes a cell a chunk is ~18 MB.
pub(crate) const CHUNK_CELLS: u64 = 1024;

/// Everything fixed for one dataset; makes any chunk of it.
pub(crate) struct Generator {
    seed: u64,
    cells: u64,
    design: Design,
    model: Model,
    obs: ObsTable,
    /// `Some` for an obs-only dataset, whose totals are drawn, not summed.
    totals: Option<TotalsLaw>,
}

pub(crate) struct Chunk {
    pub obs: RecordBatch,
    pub n_genes: Vec<u32>,
    pub totals: Vec<f64>,
    /// `None` for an obs-only dataset.
    pub matrix: Option<Csr>,
}

/// A chunk's expression rows; `indptr` starts at 0.
pub(crate) struct Csr {
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub values: Vec<f64>,
}

/// What a chunk's cells draw first, from their own stream: cheap, so that
/// the total number of non-zeros is known before the matrix is made.
struct CellDraws {
    cell_lines: Vec<u8>,
    expressed: Vec<u32>,
}

impl Generator {
    pub(crate) fn new(cells: u64, genes: u32, seed: u64, obs_only: bool) -> Self {
        let design = Design::new(cells, seed);
        let obs = ObsTable::new(&design, cells);
        let mut generator = Self {
            seed,
            cells,
            design,
            model: Model::new(genes, seed),
            obs,
            totals: None,
        };
        if obs_only {
            // Calibrated on the first chunk made in full.
            let draws = generator.cell_draws(0);
            let wells = generator.design.wells(0, draws.expressed.len());
            let sample = generator.expression(0, &draws, &wells);
            generator.totals = Some(TotalsLaw::measure(&sample.values));
        }
        generator
    }

    pub(crate) fn chunks(&self) -> u64 {
        self.cells.div_ceil(CHUNK_CELLS)
    }

    pub(crate) fn obs_table(&self) -> &ObsTable {
        &self.obs
    }

    /// Non-zeros in chunk `index`, without making its matrix.
    pub(crate) fn chunk_nnz(&self, index: u64) -> u64 {
        let draws = self.cell_draws(index);
        draws.expressed.iter().map(|&n| u64::from(n)).sum()
    }

    pub(crate) fn chunk(&self, index: u64) -> Result<Chunk, ArrowError> {
        let first_cell = index * CHUNK_CELLS;
        let draws = self.cell_draws(index);
        let wells = self.design.wells(first_cell, draws.expressed.len());
        let (matrix, totals) = match &self.totals {
            Some(law) => (None, self.drawn_totals(index, law, &draws.expressed)),
            None => {
                let csr = self.expression(index, &draws, &wells);
                let totals = row_sums(&csr);
                (Some(csr), totals)
            }
        };
        let obs = self.obs.batch(
            &self.design,
            &ObsRows {
                first_cell,
                wells: &wells,
                cell_lines: &draws.cell_lines,
                n_genes: &draws.expressed,
                totals: &totals,
            },
        )?;
        Ok(Chunk {
            obs,
            n_genes: draws.expressed,
            totals,
            matrix,
        })
    }

    fn cell_draws(&self, index: u64) -> CellDraws {
        let first_cell = index * CHUNK_CELLS;
        let cells = CHUNK_CELLS.min(self.cells - first_cell) as usize;
        let mut rng = stream(self.seed, Purpose::Cells, index);
        let mut draws = CellDraws {
            cell_lines: Vec::with_capacity(cells),
            expressed: Vec::with_capacity(cells),
        };
        for _ in 0..cells {
            draws
                .cell_lines
                .push(below(rng.next_u64(), N_CELL_LINES as u64) as u8);
            draws.expressed.push(self.model.expressed(&mut rng));
        }
        draws
    }

    fn expression(&self, index: u64, draws: &CellDraws, wells: &[Well]) -> Csr {
        let nnz: usize = draws.expressed.iter().map(|&n| n as usize).sum();
        let mut csr = Csr {
            indptr: Vec::with_capacity(wells.len() + 1),
            indices: Vec::with_capacity(nnz),
            values: Vec::with_capacity(nnz),
        };
        csr.indptr.push(0);
        let mut rng = stream(self.seed, Purpose::Expression, index);
        let mut chosen = GeneSet::new(self.model.genes());
        let cells = draws.cell_lines.iter().zip(&draws.expressed).zip(wells);
        for ((&cell_line, &expressed), well) in cells {
            while chosen.len() < expressed {
                chosen.insert(
                    self.model
                        .gene(rng.next_u64(), usize::from(cell_line), well.drug),
                );
            }
            let start = csr.indices.len();
            chosen.drain_sorted_into(&mut csr.indices);
            self.counts(&csr.indices[start..], &mut rng, &mut csr.values);
            csr.indptr.push(csr.indices.len() as u64);
        }
        csr
    }

    /// The counts of `genes`, two from each random u64 (32 bits are plenty).
    fn counts(&self, genes: &[u32], rng: &mut ChaCha8Rng, out: &mut Vec<f64>) {
        for pair in genes.chunks(2) {
            let bits = rng.next_u64();
            out.push(self.model.count(pair[0], bits as u32));
            if let Some(&second) = pair.get(1) {
                out.push(self.model.count(second, (bits >> 32) as u32));
            }
        }
    }

    fn drawn_totals(&self, index: u64, law: &TotalsLaw, expressed: &[u32]) -> Vec<f64> {
        let mut rng = stream(self.seed, Purpose::Totals, index);
        expressed.iter().map(|&n| law.draw(n, &mut rng)).collect()
    }
}

fn row_sums(csr: &Csr) -> Vec<f64> {
    csr.indptr
        .windows(2)
        .map(|w| csr.values[w[0] as usize..w[1] as usize].iter().sum())
        .collect()
}

impl Chunk {
    pub(crate) fn cells(&self) -> usize {
        self.n_genes.len()
    }

    /// The rows as the store writer takes them.
    pub(crate) fn rows(&self) -> CellRows<'_> {
        match &self.matrix {
            Some(csr) => CellRows::Expression(csr.as_rows()),
            None => CellRows::StatisticsOnly {
                n_genes: &self.n_genes,
                totals: &self.totals,
            },
        }
    }
}

impl Csr {
    pub(crate) fn as_rows(&self) -> CsrRows<'_> {
        CsrRows {
            indptr: &self.indptr,
            indices: &self.indices,
            values: &self.values,
        }
    }
}
