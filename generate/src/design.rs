//! The experimental design: the label vocabularies (plates, cell lines,
//! drugs, doses, samples) and where each cell sits in it.
//!
//! Cells are stored plate by plate and, within a plate, drug by drug: plate
//! `p` holds cells `⌊N·p/14⌋ .. ⌊N·(p+1)/14⌋`, and its drug groups split that
//! range the same way, in drug order. Each (plate, drug) well was treated at
//! one dose, drawn once per well; its cells are a pool of all cell lines.

use rand::RngCore;

use crate::rng::{below, stream, Purpose};

pub(crate) const N_PLATES: usize = 14;
pub(crate) const N_CELL_LINES: usize = 50;
pub(crate) const N_DRUGS: usize = 380;
/// Drug 0: the vehicle control, which perturbs nothing.
pub(crate) const CONTROL_DRUG: &str = "DMSO_TF";
pub(crate) const DOSES: [&str; 3] = ["0.05uM", "0.5uM", "5.0uM"];

/// Where one cell sits in the design.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Well {
    pub plate: usize,
    pub drug: usize,
}

impl Well {
    /// The sample (well) code: wells are numbered plate-major.
    pub(crate) fn sample(self) -> usize {
        self.plate * N_DRUGS + self.drug
    }
}

pub(crate) struct Design {
    cells: u64,
    /// Dose code of each well, indexed by [`Well::sample`].
    doses: Vec<u8>,
}

impl Design {
    pub(crate) fn new(cells: u64, seed: u64) -> Self {
        let mut rng = stream(seed, Purpose::Design, 0);
        let doses = (0..N_PLATES * N_DRUGS)
            .map(|_| below(rng.next_u64(), DOSES.len() as u64) as u8)
            .collect();
        Self { cells, doses }
    }

    pub(crate) fn dose(&self, well: Well) -> usize {
        usize::from(self.doses[well.sample()])
    }

    /// The wells of cells `first..first + count`, in order.
    pub(crate) fn wells(&self, first: u64, count: usize) -> Vec<Well> {
        let mut wells = Vec::with_capacity(count);
        let mut current = self.well(first);
        let mut group_end = self.group_end(current);
        for cell in first..first + count as u64 {
            // Recomputed only at group boundaries: the division is not free.
            if cell >= group_end {
                current = self.well(cell);
                group_end = self.group_end(current);
            }
            wells.push(current);
        }
        wells
    }

    fn well(&self, cell: u64) -> Well {
        let plate = group_of(cell, self.cells, N_PLATES);
        let plate_start = group_start(plate, self.cells, N_PLATES);
        let plate_size = group_start(plate + 1, self.cells, N_PLATES) - plate_start;
        let drug = group_of(cell - plate_start, plate_size, N_DRUGS);
        Well { plate, drug }
    }

    /// The first cell after the group of `well`.
    fn group_end(&self, well: Well) -> u64 {
        let plate_start = group_start(well.plate, self.cells, N_PLATES);
        let plate_size = group_start(well.plate + 1, self.cells, N_PLATES) - plate_start;
        plate_start + group_start(well.drug + 1, plate_size, N_DRUGS)
    }

    pub(crate) fn plate_names() -> Vec<String> {
        (1..=N_PLATES).map(|p| format!("plate{p}")).collect()
    }

    pub(crate) fn cell_line_names() -> Vec<String> {
        (1..=N_CELL_LINES).map(|l| format!("CVCL_{l:04}")).collect()
    }

    pub(crate) fn drug_names() -> Vec<String> {
        std::iter::once(CONTROL_DRUG.to_owned())
            .chain((1..N_DRUGS).map(|d| format!("drug_{d:03}")))
            .collect()
    }

    pub(crate) fn dose_names() -> Vec<String> {
        DOSES.iter().map(|d| d.to_string()).collect()
    }

    /// One sample per well, e.g. `smp_p3_d017_1` (plate 3, drug 17, dose 1).
    pub(crate) fn sample_names(&self) -> Vec<String> {
        (0..N_PLATES)
            .flat_map(|plate| (0..N_DRUGS).map(move |drug| Well { plate, drug }))
            .map(|w| format!("smp_p{}_d{:03}_{}", w.plate + 1, w.drug, self.dose(w)))
            .collect()
    }
}

/// The first of `total` items in group `group` of `groups` near-equal groups.
fn group_start(group: usize, total: u64, groups: usize) -> u64 {
    (u128::from(total) * group as u128 / groups as u128) as u64
}

/// The group of item `index`: the last group starting at or before it.
fn group_of(index: u64, total: u64, groups: usize) -> usize {
    // group_start(g) <= index  ⇔  total·g < (index + 1)·groups
    ((u128::from(index + 1) * groups as u128 - 1) / u128::from(total)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_partition_the_items_nearly_equally() {
        for (total, groups) in [(1u64, 14usize), (13, 14), (14, 14), (1000, 14), (1001, 380)] {
            let sizes: Vec<u64> = (0..groups)
                .map(|g| group_start(g + 1, total, groups) - group_start(g, total, groups))
                .collect();
            assert_eq!(sizes.iter().sum::<u64>(), total);
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            for index in 0..total {
                let g = group_of(index, total, groups);
                assert!(group_start(g, total, groups) <= index);
                assert!(index < group_start(g + 1, total, groups));
            }
        }
    }

    #[test]
    fn cells_are_grouped_by_plate_then_drug() {
        let design = Design::new(100_000, 0);
        let wells = design.wells(0, 100_000);
        assert!(wells
            .windows(2)
            .all(|w| (w[0].plate, w[0].drug) <= (w[1].plate, w[1].drug)));
        assert_eq!(wells[0], Well { plate: 0, drug: 0 });
        assert_eq!(
            wells[99_999],
            Well {
                plate: 13,
                drug: N_DRUGS - 1
            }
        );
        let a_run = design.wells(54_321, 1000);
        assert_eq!(a_run, wells[54_321..55_321]);
    }

    #[test]
    fn every_well_has_one_dose_and_sample_names_are_unique() {
        let design = Design::new(10, 3);
        let names = design.sample_names();
        assert_eq!(names.len(), N_PLATES * N_DRUGS);
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names[0].starts_with("smp_p1_d000_"));
        let doses: std::collections::HashSet<_> = (0..N_DRUGS)
            .map(|drug| design.dose(Well { plate: 0, drug }))
            .collect();
        assert_eq!(doses.len(), DOSES.len(), "doses vary between wells");
    }
}
