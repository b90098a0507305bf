//! Serving one partition: a blocking thread reads each fetch, builds its
//! minibatches one at a time and encodes them into a bounded channel, so
//! the client's pace sets the server's. While a fetch streams, the kernel
//! is already reading the next one's pages.

use std::sync::Arc;
use std::time::Instant;

use arrow_flight::FlightData;
use cellflight_sampler::Fetches;
use cellflight_store::runs;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::assemble::FetchRows;
use super::encode::{minibatch_message, stream_preamble};
use super::plan::StreamPlan;
use crate::error::ServiceError;
use crate::metrics::Metrics;

type MinibatchStream = ReceiverStream<Result<FlightData, Status>>;

/// Starts streaming `fetches` of `partition`, counted in `metrics` and
/// logged, when it ends, in the caller's tracing span. The channel holds
/// one fetch's minibatches: with the one being built, about two fetches in
/// memory.
pub fn stream_partition(
    plan: Arc<StreamPlan>,
    fetches: Fetches,
    partition: u32,
    metrics: Arc<Metrics>,
) -> MinibatchStream {
    let capacity = plan.request.fetch_factor as usize + 1;
    let (sender, receiver) = mpsc::channel(capacity);
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _span = span.enter();
        let started = Instant::now();
        let send = |message| sender.blocking_send(message).is_ok();
        let mut sent = Sent::default();
        let outcome = produce(&plan, fetches, partition, &metrics, &send, &mut sent);
        let seconds = started.elapsed().as_secs_f64();
        let (minibatches, cells) = (sent.minibatches, sent.cells);
        match outcome {
            Ok(()) if sent.client_left => {
                tracing::info!(
                    minibatches,
                    cells,
                    seconds,
                    "client went away; stream freed"
                )
            }
            Ok(()) => tracing::info!(minibatches, cells, seconds, "stream complete"),
            Err(error) => {
                tracing::warn!(minibatches, cells, seconds, %error, "stream failed");
                let status = Status::from(error);
                metrics.failed(status.code());
                send(Err(status));
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// What a partition's stream has sent so far.
#[derive(Default)]
struct Sent {
    minibatches: u64,
    cells: u64,
    /// The client stopped reading (cancelled, or went away).
    client_left: bool,
}

fn produce(
    plan: &StreamPlan,
    fetches: Fetches,
    partition: u32,
    metrics: &Metrics,
    send: &impl Fn(Result<FlightData, Status>) -> bool,
    sent: &mut Sent,
) -> Result<(), ServiceError> {
    let matrix = plan
        .dataset
        .matrix()
        .expect("StreamPlan::build checked the matrix");
    let preamble = stream_preamble(&plan.output.schema, &plan.output.obs)?;
    if !preamble.into_iter().all(|message| send(Ok(message))) {
        sent.client_left = true;
        return Ok(());
    }
    let mut fetches = fetches.peekable();
    while let Some(fetch) = fetches.next() {
        if let Some(next) = fetches.peek() {
            for run in runs(&plan.cell_ids(next.read_order())) {
                matrix.prefetch(run)?;
            }
        }
        let rows = FetchRows::read(matrix, plan.cell_ids(fetch.read_order()))?;
        for batch in fetch.batches() {
            let body = plan.output.minibatch(&rows, &batch)?;
            let message = minibatch_message(body, batch.len(), partition, batch.index);
            let bytes = message.data_body.len();
            if !send(Ok(message)) {
                sent.client_left = true;
                return Ok(());
            }
            metrics.minibatch_sent(batch.len(), bytes);
            sent.minibatches += 1;
            sent.cells += batch.len() as u64;
        }
    }
    Ok(())
}
