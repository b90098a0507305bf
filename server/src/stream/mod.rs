//! The training stream (docs/protocol.md): a JSON request planned into
//! partitions, each served from its ticket as one record batch a minibatch.

mod assemble;
mod cohort;
mod columns;
mod encode;
mod genes;
mod ipc;
mod plan;
mod produce;

pub use cohort::WeightedCache;
pub use columns::ColumnCache;
pub use plan::StreamPlan;
pub use produce::stream_partition;
