//! Serving one partition: a blocking thread reads each fetch, builds its
//! minibatches one at a time and encodes them into a bounded channel, so
//! the client's pace sets the server's. While a fetch streams, the kernel
//! is already reading the next one's pages.

use std::sync::Arc;

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

type MinibatchStream = ReceiverStream<Result<FlightData, Status>>;

/// Starts streaming `fetches` of `partition`. The channel holds one fetch's
/// minibatches: with the one being built, about two fetches in memory.
pub fn stream_partition(
    plan: Arc<StreamPlan>,
    fetches: Fetches,
    partition: u32,
) -> MinibatchStream {
    let capacity = plan.request.fetch_factor as usize + 1;
    let (sender, receiver) = mpsc::channel(capacity);
    tokio::task::spawn_blocking(move || {
        let send = |message| sender.blocking_send(message).is_ok();
        match produce(&plan, fetches, partition, &send) {
            Ok(Sent::All) => {}
            Ok(Sent::ClientLeft) => tracing::debug!(partition, "client went away; stream freed"),
            Err(error) => {
                send(Err(error.into()));
            }
        }
    });
    ReceiverStream::new(receiver)
}

enum Sent {
    All,
    ClientLeft,
}

fn produce(
    plan: &StreamPlan,
    fetches: Fetches,
    partition: u32,
    send: &impl Fn(Result<FlightData, Status>) -> bool,
) -> Result<Sent, ServiceError> {
    let matrix = plan
        .dataset
        .matrix()
        .expect("StreamPlan::build checked the matrix");
    let preamble = stream_preamble(&plan.output.schema, &plan.output.obs)?;
    if !preamble.into_iter().all(|message| send(Ok(message))) {
        return Ok(Sent::ClientLeft);
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
            if !send(Ok(minibatch_message(
                body,
                batch.len(),
                partition,
                batch.index,
            ))) {
                return Ok(Sent::ClientLeft);
            }
        }
    }
    Ok(Sent::All)
}
