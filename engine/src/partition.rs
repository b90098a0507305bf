//! Serving one partition: a blocking thread reads each fetch, builds its
//! minibatches one at a time and encodes them into a bounded channel, so
//! the client's pace sets the server's, and row reads, page faults and
//! encoding never run on the async runtime's threads. While a fetch
//! streams, the next one's rows are already being read ahead.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use arrow_ipc::writer::EncodedData;
use cellflight_sampler::Fetches;
use cellflight_schemas::BatchPosition;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::encode::stream_preamble;
use crate::error::EngineError;
use crate::plan::Plan;

/// One minibatch, encoded: a record batch message of `cells` rows.
pub struct Minibatch {
    pub position: BatchPosition,
    pub cells: usize,
    pub message: EncodedData,
}

impl fmt::Debug for Minibatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Minibatch")
            .field("position", &self.position)
            .field("cells", &self.cells)
            .field("body_bytes", &self.message.arrow_data.len())
            .finish()
    }
}

/// The minibatches of a partition as they are produced; an error ends it.
pub type Minibatches = ReceiverStream<Result<Minibatch, EngineError>>;

/// A partition being served: the messages that open it, then its
/// minibatches. It is complete when `expected_minibatches` have come; a
/// stream that ends before, without an error, has lost its producer.
pub struct Partition {
    pub preamble: Vec<EncodedData>,
    pub expected_minibatches: u64,
    pub minibatches: Minibatches,
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition")
            .field("preamble_messages", &self.preamble.len())
            .field("expected_minibatches", &self.expected_minibatches)
            .finish_non_exhaustive()
    }
}

/// Starts producing `partition` of `plan` from `start_batch` on. The
/// channel holds one fetch's minibatches: with the one being built, about
/// two fetches in memory.
pub(crate) fn serve_partition(
    plan: Arc<Plan>,
    partition: u32,
    start_batch: u64,
) -> Result<Partition, EngineError> {
    let fetches = plan.fetches(partition, start_batch)?;
    let preamble = stream_preamble(&plan.output.schema, &plan.output.obs)?;
    let expected_minibatches = plan.batches_per_partition() - start_batch;
    let capacity = plan.request().fetch_factor as usize + 1;
    let (sender, receiver) = mpsc::channel(capacity);
    tokio::task::spawn_blocking(move || {
        let send = |minibatch| sender.blocking_send(minibatch).is_ok();
        let produced = panic::catch_unwind(AssertUnwindSafe(|| {
            produce(&plan, fetches, partition, &send)
        }));
        let failure = match produced {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(panic) => EngineError::panicked("producing a partition", panic.as_ref()),
        };
        send(Err(failure));
    });
    Ok(Partition {
        preamble,
        expected_minibatches,
        minibatches: ReceiverStream::new(receiver),
    })
}

/// Sends every minibatch of `fetches`; stops early, without error, when
/// the receiver is gone (the client went away).
fn produce(
    plan: &Plan,
    fetches: Fetches,
    partition: u32,
    send: &impl Fn(Result<Minibatch, EngineError>) -> bool,
) -> Result<(), EngineError> {
    let mut fetches = fetches.peekable();
    while let Some(fetch) = fetches.next() {
        if let Some(next) = fetches.peek() {
            plan.rows.prefetch(&plan.cell_ids(next.read_order()))?;
        }
        let rows = plan.rows.read(plan.cell_ids(fetch.read_order()))?;
        for batch in fetch.batches() {
            let body = plan.output.minibatch(&rows, &batch)?;
            plan.rows.check_intact()?;
            let minibatch = Minibatch {
                position: BatchPosition {
                    partition,
                    batch: batch.index,
                },
                cells: batch.len(),
                message: body.record_batch(batch.len()),
            };
            if !send(Ok(minibatch)) {
                return Ok(());
            }
        }
    }
    Ok(())
}
