//! The epoch order: which cohort position is at each position of the epoch,
//! computed one position (or one run of positions) at a time.

use std::ops::Range;

use crate::permutation::Permutation;
use crate::rng::{below, stream, Domain};
use crate::{Mode, SamplerConfig};

/// The order of the epoch's `n` cells (cohort positions), without padding.
#[derive(Debug, Clone)]
pub(crate) struct EpochOrder {
    n: u64,
    /// `None`: cohort order (sequential mode, or an empty cohort).
    blocks: Option<Blocks>,
}

impl EpochOrder {
    pub(crate) fn new(n: u64, config: &SamplerConfig) -> Self {
        let blocks = match config.mode {
            Mode::BlockShuffle if n > 0 => Some(Blocks::new(n, config)),
            _ => None,
        };
        EpochOrder { n, blocks }
    }

    /// The cohort position at epoch position `position < n`.
    pub(crate) fn cell(&self, position: u64) -> u64 {
        let mut cell = None;
        self.for_each_run(position..position + 1, |run| cell = Some(run.start));
        #[allow(clippy::expect_used, reason = "a range of one position is one run")]
        cell.expect("a one-position range has one run")
    }

    /// Calls `visit` with the runs of consecutive cohort positions that make
    /// up epoch positions `range` (within `[0, n)`), in epoch order.
    pub(crate) fn for_each_run(&self, range: Range<u64>, mut visit: impl FnMut(Range<u64>)) {
        debug_assert!(range.end <= self.n);
        match &self.blocks {
            None if !range.is_empty() => visit(range),
            None => {}
            Some(blocks) => blocks.for_each_run(range, visit),
        }
    }
}

/// The cohort cut into blocks, and their permuted order.
///
/// Blocks are the cells of a grid of `size` laid over the cohort shifted
/// right by `shift = (size − offset) mod size` phantom positions: block `b`
/// is `[b·size − shift, (b+1)·size − shift) ∩ [0, n)`. So the first block
/// has `offset` cells (all `size` if the offset is 0), the last may be short,
/// and every other block has `size`. Slot `k` of the epoch holds block
/// `permutation(k)`.
#[derive(Debug, Clone)]
struct Blocks {
    n: u64,
    size: u64,
    shift: u64,
    permutation: Permutation,
    /// `(slot, size − length)` of the first and the last block: the only
    /// ones that may be short. Slot starts are `k·size` minus the
    /// shortfalls of the irregular blocks in earlier slots.
    irregular: [(u64, u64); 2],
}

impl Blocks {
    fn new(n: u64, config: &SamplerConfig) -> Self {
        let size = u64::from(config.block_size);
        let mut rng = stream(config.seed, config.epoch, Domain::Blocks, 0);
        let offset = below(&mut rng, size);
        let shift = (size - offset) % size;
        let count = (n + shift).div_ceil(size);
        let permutation = Permutation::new(count, &mut rng);
        let mut blocks = Blocks {
            n,
            size,
            shift,
            permutation,
            irregular: [(0, 0); 2],
        };
        blocks.irregular = blocks.irregular_slots(count);
        blocks
    }

    /// Where the first and the last of `count` blocks landed, with their
    /// shortfalls (a single block is counted once).
    fn irregular_slots(&self, count: u64) -> [(u64, u64); 2] {
        let slot = |b| (self.permutation.invert(b), self.size - self.len(b));
        let last = count - 1;
        [slot(0), if last > 0 { slot(last) } else { (0, 0) }]
    }

    /// The cohort positions of block `b`.
    fn cells(&self, b: u64) -> Range<u64> {
        let start = (b * self.size).saturating_sub(self.shift);
        let end = ((b + 1) * self.size - self.shift).min(self.n);
        start..end
    }

    fn len(&self, b: u64) -> u64 {
        let cells = self.cells(b);
        cells.end - cells.start
    }

    /// The epoch position where slot `k` starts.
    fn slot_start(&self, k: u64) -> u64 {
        let shortfall: u64 = self
            .irregular
            .iter()
            .filter(|&&(slot, _)| slot < k)
            .map(|&(_, short)| short)
            .sum();
        k * self.size - shortfall
    }

    /// The slot holding epoch position `position`. Slot `position / size`
    /// starts at or before it, and the shortfalls add up to less than two
    /// blocks, so at most two steps forward find it.
    fn slot_of(&self, position: u64) -> u64 {
        let mut k = position / self.size;
        while self.slot_start(k + 1) <= position {
            k += 1;
        }
        k
    }

    fn for_each_run(&self, range: Range<u64>, mut visit: impl FnMut(Range<u64>)) {
        let mut position = range.start;
        if position >= range.end {
            return;
        }
        let mut slot = self.slot_of(position);
        let mut skip = position - self.slot_start(slot);
        while position < range.end {
            let cells = self.cells(self.permutation.apply(slot));
            let start = cells.start + skip;
            let end = cells.end.min(start + (range.end - position));
            visit(start..end);
            position += end - start;
            slot += 1;
            skip = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(n: u64, block_size: u32, seed: u64) -> Vec<u64> {
        let config = SamplerConfig {
            block_size,
            seed,
            ..SamplerConfig::default()
        };
        let order = EpochOrder::new(n, &config);
        let mut cells = Vec::new();
        order.for_each_run(0..n, |run| cells.extend(run));
        cells
    }

    #[test]
    fn runs_and_single_positions_agree() {
        for (n, block_size) in [(1, 1), (1, 16), (10, 3), (100, 7), (257, 16), (64, 64)] {
            let config = SamplerConfig {
                block_size,
                ..SamplerConfig::default()
            };
            let epoch = EpochOrder::new(n, &config);
            let all = order(n, block_size, 0);
            for start in 0..n {
                assert_eq!(epoch.cell(start), all[start as usize]);
                let end = (start + 11).min(n);
                let mut part = Vec::new();
                epoch.for_each_run(start..end, |run| part.extend(run));
                assert_eq!(part, all[start as usize..end as usize]);
            }
        }
    }

    #[test]
    fn the_epoch_order_is_a_permutation_of_blocks() {
        for n in [1, 2, 5, 16, 17, 100, 1000] {
            for block_size in [1, 2, 3, 16, 2000] {
                for seed in 0..4 {
                    let cells = order(n, block_size, seed);
                    let mut sorted = cells.clone();
                    sorted.sort_unstable();
                    assert_eq!(sorted, (0..n).collect::<Vec<_>>());
                    // Cells leave their block only at block boundaries: at
                    // most one break per block, and fewer than n/B + 2 blocks.
                    let breaks = cells.windows(2).filter(|w| w[1] != w[0] + 1).count() as u64;
                    assert!(
                        breaks < n / u64::from(block_size) + 2,
                        "n {n} B {block_size}"
                    );
                }
            }
        }
    }
}
