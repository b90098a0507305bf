//! The expression model: how many genes a cell expresses, which ones, and
//! their counts. See the crate documentation for the model in words.

use rand::RngCore;
use rand_chacha::ChaCha8Rng;

use crate::design::{N_CELL_LINES, N_DRUGS};
use crate::popularity::Popularity;
use crate::rng::{below, standard_normal, stream, Purpose};

/// Mean genes expressed per cell at full size (Tahoe-100M: about 1,500).
const MEAN_EXPRESSED: f64 = 1500.0;
/// Spread of the log of the number of genes a cell expresses.
const LOG_SPREAD: f64 = 0.35;
/// Fewest genes a full-size cell expresses (QC thresholds drop smaller cells).
const MIN_EXPRESSED: f64 = 200.0;
/// Marker genes per cell line and per drug.
const LINE_PROGRAM: usize = 100;
const DRUG_PROGRAM: usize = 40;
/// Out of 256, cumulative: how often a gene draw comes from the cell's
/// cell-line program (6%), its drug's program (4%), or evenly from all genes
/// (9%: every gene is seen sometimes, and drawing distinct genes never
/// stalls on the popular ones); the rest follow gene popularity.
const LINE_DRAWS: u64 = 16;
const DRUG_DRAWS: u64 = 26;
const UNIFORM_DRAWS: u64 = 49;
/// Count scale of the gene of rank r: SCALE_FLOOR + SCALE_HEAD / (1 + r / SCALE_RANKS).
/// Popular genes have high counts, rare ones mostly 1.
const SCALE_FLOOR: f64 = 0.8;
const SCALE_HEAD: f64 = 20.0;
const SCALE_RANKS: f64 = 20.0;
/// Counts are stored as UInt16.
const MAX_COUNT: f64 = u16::MAX as f64;

pub(crate) struct Model {
    genes: u32,
    expressed: ExpressedLaw,
    popularity: Popularity,
    /// `LINE_PROGRAM` genes per cell line, line-major.
    line_programs: Vec<u32>,
    /// `DRUG_PROGRAM` genes per drug, drug-major; drug 0 (control) has none used.
    drug_programs: Vec<u32>,
}

impl Model {
    pub(crate) fn new(genes: u32, seed: u64) -> Self {
        let popularity = Popularity::new(genes, &mut stream(seed, Purpose::GeneRanks, 0));
        let mut programs = stream(seed, Purpose::Programs, 0);
        let mut pick = |n: usize| -> Vec<u32> {
            (0..n)
                .map(|_| below(programs.next_u64(), u64::from(genes)) as u32)
                .collect()
        };
        Self {
            genes,
            expressed: ExpressedLaw::new(genes),
            popularity,
            line_programs: pick(N_CELL_LINES * LINE_PROGRAM),
            drug_programs: pick(N_DRUGS * DRUG_PROGRAM),
        }
    }

    pub(crate) fn genes(&self) -> u32 {
        self.genes
    }

    /// The number of genes a cell expresses.
    pub(crate) fn expressed(&self, rng: &mut ChaCha8Rng) -> u32 {
        self.expressed.draw(rng)
    }

    /// One gene draw for a cell of `cell_line` treated with `drug`. Cells
    /// draw until they have their number of distinct genes, so popular
    /// genes are drawn first and more often: weighted sampling without
    /// replacement.
    #[inline]
    pub(crate) fn gene(&self, bits: u64, cell_line: usize, drug: usize) -> u32 {
        match bits >> 56 {
            choice if choice < LINE_DRAWS => {
                self.line_programs[cell_line * LINE_PROGRAM + program_slot(bits, LINE_PROGRAM)]
            }
            // The control perturbs nothing: its cells draw by popularity.
            choice if choice < DRUG_DRAWS && drug != 0 => {
                self.drug_programs[drug * DRUG_PROGRAM + program_slot(bits, DRUG_PROGRAM)]
            }
            choice if (DRUG_DRAWS..UNIFORM_DRAWS).contains(&choice) => {
                below(bits << 8, u64::from(self.genes)) as u32
            }
            _ => self.popularity.sample(bits),
        }
    }

    /// The count of `gene` in a cell where it is expressed: 1 plus a
    /// discretised Lomax (Pareto II, shape 2) variable, capped to fit UInt16.
    /// P(count = 1) = 1 - (1 + 1/scale)^-2: 0.80 for rare genes, 0.09 for the
    /// most popular.
    #[inline]
    pub(crate) fn count(&self, gene: u32, bits: u32) -> f64 {
        let scale = count_scale(self.popularity.rank_of(gene));
        // U in (0, 1] from 32 bits: U^-½ reaches 65,536, past the cap.
        let uniform = (f64::from(bits) + 1.0) * (1.0 / 4_294_967_296.0);
        let lomax = scale * (1.0 / uniform.sqrt() - 1.0);
        // Truncation is floor for a non-negative number (and, unlike floor,
        // needs no libm call without SSE4.1); the min caps before converting.
        1.0 + f64::from(lomax.min(MAX_COUNT - 1.0) as u32)
    }
}

/// Slot in a program from the low 32 bits (the choice used the top 8).
#[inline]
fn program_slot(bits: u64, len: usize) -> usize {
    (((bits & 0xFFFF_FFFF) * len as u64) >> 32) as usize
}

fn count_scale(rank: u32) -> f64 {
    SCALE_FLOOR + SCALE_HEAD / (1.0 + f64::from(rank) / SCALE_RANKS)
}

/// Genes expressed per cell: log-normal around the mean, clipped.
struct ExpressedLaw {
    log_median: f64,
    min: f64,
    max: f64,
}

impl ExpressedLaw {
    /// Small gene sets scale down: the mean is a quarter of the genes when
    /// that is under 1,500. The cap of half the genes keeps drawing distinct
    /// genes quick (the last few distinct genes of a full set take long).
    fn new(genes: u32) -> Self {
        let genes = f64::from(genes);
        let mean = MEAN_EXPRESSED.min(genes / 4.0).max(1.0);
        let max = (genes / 2.0).floor().max(1.0);
        Self {
            log_median: mean.ln() - LOG_SPREAD * LOG_SPREAD / 2.0,
            min: MIN_EXPRESSED.min(mean / 4.0).max(1.0).min(max),
            max,
        }
    }

    fn draw(&self, rng: &mut ChaCha8Rng) -> u32 {
        let n = (self.log_median + LOG_SPREAD * standard_normal(rng)).exp();
        n.round().clamp(self.min, self.max) as u32
    }
}

/// An obs-only dataset has no matrix to sum, so a cell's total count is drawn
/// from the normal approximation of the sum of its counts: mean
/// `expressed · mean`, variance `expressed · variance`, with the per-count
/// mean and variance measured on sample cells of the full model.
pub(crate) struct TotalsLaw {
    mean: f64,
    variance: f64,
}

impl TotalsLaw {
    /// Measures the counts of `sample`, the values of some fully generated cells.
    pub(crate) fn measure(sample: &[f64]) -> Self {
        let n = sample.len().max(1) as f64;
        let mean = sample.iter().sum::<f64>() / n;
        let variance = sample.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self { mean, variance }
    }

    /// The total count of a cell expressing `expressed` genes: at least 1 a gene.
    pub(crate) fn draw(&self, expressed: u32, rng: &mut ChaCha8Rng) -> f64 {
        let n = f64::from(expressed);
        let total = n * self.mean + (n * self.variance).sqrt() * standard_normal(rng);
        total.round().max(n)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn test_rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(42)
    }

    #[test]
    fn expressed_genes_center_on_1500_within_bounds() {
        let law = ExpressedLaw::new(62_710);
        let mut rng = test_rng();
        let draws: Vec<u32> = (0..20_000).map(|_| law.draw(&mut rng)).collect();
        let mean = draws.iter().map(|&n| f64::from(n)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 1500.0).abs() < 20.0, "mean {mean}");
        assert!(draws.iter().all(|&n| (200..=31_355).contains(&n)));
    }

    #[test]
    fn small_gene_sets_scale_down() {
        let mut rng = test_rng();
        for genes in [1u32, 2, 5, 100] {
            let law = ExpressedLaw::new(genes);
            for _ in 0..1000 {
                let n = law.draw(&mut rng);
                assert!(n >= 1 && n <= genes.div_ceil(2).max(1), "{n} of {genes}");
            }
        }
    }

    #[test]
    fn counts_are_at_least_1_and_capped() {
        let model = Model::new(1000, 0);
        assert_eq!(model.count(0, u32::MAX), 1.0, "the largest uniform gives 1");
        assert_eq!(model.count(0, 0).fract(), 0.0);
        for gene in 0..1000 {
            assert!((1.0..=MAX_COUNT).contains(&model.count(gene, 0)));
        }
    }

    #[test]
    fn approximated_totals_match_the_measured_law() {
        let law = TotalsLaw::measure(&[1.0, 1.0, 1.0, 5.0]);
        let mut rng = test_rng();
        let totals: Vec<f64> = (0..10_000).map(|_| law.draw(1000, &mut rng)).collect();
        let mean = totals.iter().sum::<f64>() / totals.len() as f64;
        assert!((mean - 2000.0).abs() < 5.0, "mean {mean}");
        assert!(totals.iter().all(|&t| t >= 1000.0 && t.fract() == 0.0));
    }
}
