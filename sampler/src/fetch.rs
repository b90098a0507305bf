//! Fetches: the unit of reading and of in-memory shuffling.

use std::ops::Range;

use crate::rng::{shuffle, stream, Domain};
use crate::{Mode, Plan};

/// The fetches of one partition from a resume point on, computed one at a
/// time. Owns a copy of the plan, so it can be moved into a task.
#[derive(Debug, Clone)]
pub struct Fetches {
    plan: Plan,
    partition: u32,
    /// The batches still to be produced.
    batches: Range<u64>,
}

impl Fetches {
    pub(crate) fn new(plan: Plan, partition: u32, batches: Range<u64>) -> Self {
        Fetches {
            plan,
            partition,
            batches,
        }
    }

    fn fetch_factor(&self) -> u64 {
        u64::from(self.plan.config().fetch_factor)
    }
}

impl Iterator for Fetches {
    type Item = Fetch;

    fn next(&mut self) -> Option<Fetch> {
        if self.batches.is_empty() {
            return None;
        }
        let index = self.batches.start / self.fetch_factor();
        let end = ((index + 1) * self.fetch_factor()).min(self.batches.end);
        let fetch = Fetch::new(&self.plan, self.partition, index, self.batches.start..end);
        self.batches.start = end;
        Some(fetch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = if self.batches.is_empty() {
            0
        } else {
            let factor = self.fetch_factor();
            (self.batches.end.div_ceil(factor) - self.batches.start / factor) as usize
        };
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Fetches {}

/// One fetch of a partition: the cells to read, and the batches to emit
/// from them.
///
/// Read the cells of [`read_order`](Self::read_order) (cohort positions,
/// ascending, no repeats), then emit each [`Batch`]: its row `i` is the
/// cell read at `read_order[read_indices[i]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    index: u64,
    first_batch: u64,
    batch_size: usize,
    read_order: Vec<u64>,
    read_indices: Vec<u32>,
    is_padding: Vec<bool>,
}

impl Fetch {
    /// Fetch `index` of `partition`, keeping only `batches` (all within it).
    fn new(plan: &Plan, partition: u32, index: u64, batches: Range<u64>) -> Self {
        let (cells, padding) = dealt_cells(plan, partition, index);
        let rows = output_rows(plan, partition, index, cells.len());
        // Resuming or drop_last keeps only some of the fetch's batches;
        // only their cells are read.
        let batch_size = plan.config().batch_size as usize;
        let fetch_start = index * u64::from(plan.config().fetch_factor);
        let kept_start = (batches.start - fetch_start) as usize * batch_size;
        let kept_end = ((batches.end - fetch_start) as usize * batch_size).min(rows.len());
        let kept = &rows[kept_start..kept_end];

        let (read_order, read_indices) = read_plan(&cells, kept);
        Fetch {
            index,
            first_batch: batches.start,
            batch_size,
            read_order,
            read_indices,
            is_padding: kept.iter().map(|&row| padding[row as usize]).collect(),
        }
    }

    /// The fetch's index within its partition: it holds batches
    /// `index × fetch_factor ..` of the partition.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The partition-wide index of this fetch's first batch.
    pub fn first_batch(&self) -> u64 {
        self.first_batch
    }

    /// The cohort positions to read, ascending and distinct: map them
    /// through the cohort and read the runs of consecutive cell ids.
    pub fn read_order(&self) -> &[u64] {
        &self.read_order
    }

    /// The rows of all the fetch's batches, in output order, as indices into
    /// [`read_order`](Self::read_order).
    pub fn read_indices(&self) -> &[u32] {
        &self.read_indices
    }

    /// Whether each row (as in [`read_indices`](Self::read_indices)) is
    /// padding: a repeat that evens out the partitions.
    pub fn is_padding(&self) -> &[bool] {
        &self.is_padding
    }

    /// The batches, in order; each but the partition's last is full.
    pub fn batches(&self) -> impl Iterator<Item = Batch<'_>> + '_ {
        self.read_indices
            .chunks(self.batch_size)
            .zip(self.is_padding.chunks(self.batch_size))
            .zip(self.first_batch..)
            .map(|((read_indices, is_padding), index)| Batch {
                index,
                read_indices,
                is_padding,
            })
    }
}

/// The cohort positions of fetch `index` of `partition`, in dealt order,
/// and whether each is padding.
fn dealt_cells(plan: &Plan, partition: u32, index: u64) -> (Vec<u64>, Vec<bool>) {
    let fetch_size = plan.config().fetch_size();
    let first = index * fetch_size;
    let len = fetch_size.min(plan.cells_per_partition() - first);
    if let Some(weights) = plan.weights() {
        let config = plan.config();
        let value = (u64::from(partition) << 32) | index;
        let mut rng = stream(config.seed, config.epoch, Domain::WeightedDraws, value);
        let cells = (0..len).map(|_| weights.draw(&mut rng)).collect();
        return (cells, vec![false; len as usize]);
    }
    let start = u64::from(partition) * plan.cells_per_partition() + first;
    let mut cells = Vec::with_capacity(len as usize);
    let mut padding = Vec::with_capacity(len as usize);
    plan.for_each_cell(start..start + len, |cell, is_padding| {
        cells.push(cell);
        padding.push(is_padding);
    });
    (cells, padding)
}

/// The fetch's rows in output order, as indices into its dealt cells:
/// shuffled with the fetch's own stream, or in order if sequential or
/// weighted (whose draws are already random). (A
/// fetch has at most `MAX_CELLS` cells, so the indices fit a `u32`.)
fn output_rows(plan: &Plan, partition: u32, index: u64, len: usize) -> Vec<u32> {
    let mut rows: Vec<u32> = (0..len as u32).collect();
    let config = plan.config();
    if config.mode == Mode::BlockShuffle {
        let value = (u64::from(partition) << 32) | index;
        let mut rng = stream(config.seed, config.epoch, Domain::FetchShuffle, value);
        shuffle(&mut rng, &mut rows);
    }
    rows
}

/// The sorted, distinct cohort positions of the `kept` rows, and each kept
/// row's index into them (rows of one cell, which only weighted draws
/// give, share its index: a cell is read once per fetch).
fn read_plan(cells: &[u64], kept: &[u32]) -> (Vec<u64>, Vec<u32>) {
    let mut by_cell = kept.to_vec();
    by_cell.sort_unstable_by_key(|&row| cells[row as usize]);
    let mut read_index = vec![0u32; cells.len()];
    let mut read_order: Vec<u64> = Vec::with_capacity(by_cell.len());
    for &row in &by_cell {
        let cell = cells[row as usize];
        if read_order.last() != Some(&cell) {
            read_order.push(cell);
        }
        read_index[row as usize] = (read_order.len() - 1) as u32;
    }
    let read_indices = kept.iter().map(|&row| read_index[row as usize]).collect();
    (read_order, read_indices)
}

/// One batch of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The batch's index `k` within the partition (the resume point after
    /// it is `k + 1`).
    pub index: u64,
    /// Per row, its index into the fetch's [`read_order`](Fetch::read_order)
    /// (ready for Arrow's `take`).
    pub read_indices: &'a [u32],
    /// Per row, whether it is padding.
    pub is_padding: &'a [bool],
}

impl Batch<'_> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.read_indices.len()
    }

    /// Whether the batch has no rows (never, for a batch of a plan).
    pub fn is_empty(&self) -> bool {
        self.read_indices.is_empty()
    }
}
