//! Serving one partition: a blocking thread reads each fetch, builds its
//! minibatches one at a time and encodes them into a queue bounded in
//! bytes, so the client's pace sets the server's, and row reads, page
//! faults and encoding never run on the async runtime's threads. While a
//! fetch streams, the next one's rows are already being read ahead.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

use arrow_ipc::writer::EncodedData;
use cellflight_sampler::Fetches;
use cellflight_schemas::BatchPosition;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::ReceiverStream;

use crate::encode::stream_preamble;
use crate::error::EngineError;
use crate::plan::Plan;

/// The most bytes of encoded minibatches a stream holds waiting for its
/// client, whatever its `fetch_factor`; a minibatch larger than this is
/// held alone. With the minibatch being made, a stream holds at most this
/// plus twice the largest minibatch its request allows.
pub const SEND_QUEUE_BYTES: u32 = 32 << 20;

/// One minibatch, encoded: a record batch message of `cells` rows. Its
/// bytes count against its stream's send queue until it is dropped (or
/// its message moved out and the rest dropped).
pub struct Minibatch {
    pub position: BatchPosition,
    pub cells: usize,
    pub message: EncodedData,
    _queued: OwnedSemaphorePermit,
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
/// queue holds at most one fetch's minibatches and [`SEND_QUEUE_BYTES`].
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
    let queue = Arc::new(Semaphore::new(SEND_QUEUE_BYTES as usize));
    tokio::task::spawn_blocking(move || {
        let send = |minibatch| sender.blocking_send(minibatch).is_ok();
        let produced = panic::catch_unwind(AssertUnwindSafe(|| {
            produce(&plan, fetches, partition, &queue, &send)
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

/// A place in `queue` for `message`: waits (on the producer's blocking
/// thread) while the queued minibatches, read by the client at its pace,
/// hold the bytes it needs.
fn queued(
    queue: &Arc<Semaphore>,
    message: &EncodedData,
) -> Result<OwnedSemaphorePermit, EngineError> {
    let bytes = message.ipc_message.len() + message.arrow_data.len();
    let permits = u32::try_from(bytes).map_or(SEND_QUEUE_BYTES, |b| b.min(SEND_QUEUE_BYTES));
    futures::executor::block_on(Arc::clone(queue).acquire_many_owned(permits)).map_err(|_| {
        EngineError::TaskFailed {
            task: "queueing a minibatch",
            reason: "the send queue was closed".into(),
        }
    })
}

/// Sends every minibatch of `fetches`; stops early, without error, when
/// the receiver is gone (the client went away).
fn produce(
    plan: &Plan,
    fetches: Fetches,
    partition: u32,
    queue: &Arc<Semaphore>,
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
            let message = body.record_batch(batch.len());
            let minibatch = Minibatch {
                position: BatchPosition {
                    partition,
                    batch: batch.index,
                },
                cells: batch.len(),
                _queued: queued(queue, &message)?,
                message,
            };
            if !send(Ok(minibatch)) {
                return Ok(());
            }
        }
    }
    Ok(())
}
