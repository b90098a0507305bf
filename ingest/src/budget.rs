//! How much of the matrix one step may hold in memory.

/// The ingest's memory budget in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryBudget(pub u64);

/// An entry held while chunks are converted, as index (4 B) and value (8 B):
/// in the chunk being decoded, the chunk waiting for the writer (the two
/// overlap), the chunk being written, its rows after zeros are dropped, and
/// the writer's pending batch.
const BYTES_PER_HELD_ENTRY: u64 = 5 * 12;

/// Chunks stay small enough (8 MiB of f64 values) for the allocator to
/// reuse the memory the last chunk freed: larger buffers are fresh mappings
/// from the kernel, and zeroing and faulting in their pages cost a fifth of
/// the ingest.
const MAX_CHUNK_ENTRIES: u64 = 1 << 20;

/// The smallest budget that still leaves room for one row of a wide matrix.
pub(crate) const MIN_BUDGET: u64 = 64 << 20;

impl MemoryBudget {
    /// Matrix entries one chunk may hold: a quarter of the budget, leaving
    /// the rest to obs rows, statistics and the writer's buffers.
    pub fn entries_per_chunk(self) -> u64 {
        (self.0 / 4 / BYTES_PER_HELD_ENTRY).clamp(1, MAX_CHUNK_ENTRIES)
    }

    /// Rows whose row pointers are read at once.
    pub fn rows_per_window(self) -> u64 {
        (self.0 / 16 / 8).clamp(1, 1 << 20)
    }

    /// Bytes a spill bucket of the CSC transpose may hold when loaded.
    pub fn bucket_bytes(self) -> u64 {
        self.0 / 4
    }
}
