//! The one wrapper every DoGet stream passes through, whatever it serves
//! (a training partition, a query result): it holds the stream's slot,
//! counts what is sent, logs how the stream ended, and turns a producer
//! that panics or stops early into an error status, so a client never
//! sees a short stream end with OK.

use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use arrow_flight::FlightData;
use cellflight_engine::{EngineError, Partition};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tonic::Status;
use tracing::Span;

use crate::error::ServiceError;
use crate::metrics::Metrics;
use crate::stream_slots::StreamSlot;

/// One message of a DoGet stream.
pub(crate) enum Outgoing {
    /// A schema, a dictionary, or a query's result batch.
    Message(FlightData),
    /// A training minibatch of `cells` cells.
    Minibatch { data: FlightData, cells: usize },
}

/// What a DoGet serves, before the wrapper.
pub(crate) struct Produced {
    pub(crate) messages: BoxStream<'static, Result<Outgoing, Status>>,
    /// Minibatches the stream must send to be complete; none when the
    /// producer alone knows (a query result).
    pub(crate) expected_minibatches: Option<u64>,
}

impl Produced {
    /// A query result (or any stream of plain messages).
    pub(crate) fn messages(messages: BoxStream<'static, Result<FlightData, Status>>) -> Self {
        Self {
            messages: messages.map(|m| m.map(Outgoing::Message)).boxed(),
            expected_minibatches: None,
        }
    }

    /// A training partition: its preamble, then each minibatch with its
    /// position as app_metadata (docs/protocol.md).
    pub(crate) fn partition(partition: Partition) -> Self {
        let preamble = partition
            .preamble
            .into_iter()
            .map(|message| Ok(Outgoing::Message(FlightData::from(message))));
        let minibatches = partition.minibatches.map(|minibatch| {
            let minibatch = minibatch.map_err(|e| Status::from(ServiceError::from(e)))?;
            let data =
                FlightData::from(minibatch.message).with_app_metadata(minibatch.position.to_json());
            Ok(Outgoing::Minibatch {
                data,
                cells: minibatch.cells,
            })
        });
        Self {
            messages: futures::stream::iter(preamble).chain(minibatches).boxed(),
            expected_minibatches: Some(partition.expected_minibatches),
        }
    }
}

/// How a stream ended, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Complete,
    Failed,
}

/// A DoGet stream being served; see the module docs.
pub(crate) struct Served {
    produced: BoxStream<'static, Result<Outgoing, Status>>,
    expected_minibatches: Option<u64>,
    _slot: StreamSlot,
    metrics: Arc<Metrics>,
    span: Span,
    started: Instant,
    minibatches: u64,
    cells: u64,
    outcome: Option<Outcome>,
}

impl Served {
    /// Serves `produced` while holding `slot`, counted in `metrics` and
    /// logged in `span`.
    pub(crate) fn new(
        produced: Produced,
        slot: StreamSlot,
        metrics: Arc<Metrics>,
        span: Span,
    ) -> Self {
        metrics.stream_started();
        Self {
            produced: produced.messages,
            expected_minibatches: produced.expected_minibatches,
            _slot: slot,
            metrics,
            span,
            started: Instant::now(),
            minibatches: 0,
            cells: 0,
            outcome: None,
        }
    }

    /// The producer's next message, or its panic as an error.
    fn poll_produced(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Outgoing, Status>>> {
        let produced = &mut self.produced;
        panic::catch_unwind(AssertUnwindSafe(|| produced.poll_next_unpin(cx))).unwrap_or_else(
            |panic| {
                let error = EngineError::panicked("serving a stream", panic.as_ref());
                Poll::Ready(Some(Err(Status::from(ServiceError::from(error)))))
            },
        )
    }

    /// The end of the producer's messages: complete, or short.
    fn ended(&self) -> Option<Status> {
        let expected = self.expected_minibatches?;
        (self.minibatches < expected).then(|| {
            Status::from(ServiceError::Internal(format!(
                "the partition's producer stopped after {} of its {expected} minibatches",
                self.minibatches
            )))
        })
    }

    /// Ends the stream with `status`, counted.
    fn fail(&mut self, status: Status) -> Status {
        self.metrics.failed(status.code());
        self.finish(Outcome::Failed);
        status
    }

    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        let (minibatches, cells) = (self.minibatches, self.cells);
        let seconds = self.started.elapsed().as_secs_f64();
        match outcome {
            Outcome::Complete => tracing::info!(minibatches, cells, seconds, "stream complete"),
            Outcome::Failed => tracing::warn!(minibatches, cells, seconds, "stream failed"),
        }
    }
}

impl Stream for Served {
    type Item = Result<FlightData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.outcome.is_some() {
            return Poll::Ready(None);
        }
        let span = self.span.clone();
        let _entered = span.enter();
        let next = match self.poll_produced(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(next) => next,
        };
        match next {
            Some(Ok(Outgoing::Message(data))) => Poll::Ready(Some(Ok(data))),
            Some(Ok(Outgoing::Minibatch { data, cells })) => {
                self.metrics.minibatch_sent(cells, data.data_body.len());
                self.minibatches += 1;
                self.cells += cells as u64;
                Poll::Ready(Some(Ok(data)))
            }
            Some(Err(status)) => Poll::Ready(Some(Err(self.fail(status)))),
            None => match self.ended() {
                Some(status) => Poll::Ready(Some(Err(self.fail(status)))),
                None => {
                    self.finish(Outcome::Complete);
                    Poll::Ready(None)
                }
            },
        }
    }
}

impl Drop for Served {
    /// A stream dropped before its end: the client cancelled or went away.
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let _entered = self.span.enter();
            let (minibatches, cells) = (self.minibatches, self.cells);
            let seconds = self.started.elapsed().as_secs_f64();
            tracing::info!(
                minibatches,
                cells,
                seconds,
                "client went away; stream freed"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use futures::stream;
    use tonic::Code;

    use super::*;
    use crate::stream_slots::{Client, StreamLimits, StreamSlots};

    fn minibatch() -> Result<Outgoing, Status> {
        Ok(Outgoing::Minibatch {
            data: FlightData::default(),
            cells: 64,
        })
    }

    fn partition_of(
        messages: impl Stream<Item = Result<Outgoing, Status>> + Send + 'static,
        expected_minibatches: u64,
    ) -> Produced {
        Produced {
            messages: messages.boxed(),
            expected_minibatches: Some(expected_minibatches),
        }
    }

    /// Serves `produced` on a server with one stream slot; answers what the
    /// client receives and the slots, to see whether the stream freed its own.
    fn serve(produced: Produced) -> (Vec<Result<FlightData, Status>>, Arc<StreamSlots>) {
        let slots = StreamSlots::new(StreamLimits {
            max_streams: 1,
            max_streams_per_client: 1,
        });
        let slot = slots.acquire(Client::UnixSocket).unwrap();
        let served = Served::new(produced, slot, Arc::default(), Span::none());
        (block_on(served.collect()), slots)
    }

    #[test]
    fn a_complete_partition_ends_with_ok_and_frees_its_slot() {
        let (received, slots) = serve(partition_of(stream::iter([minibatch(), minibatch()]), 2));
        assert_eq!(received.len(), 2);
        assert!(received.iter().all(Result::is_ok));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn a_partition_that_ends_short_ends_with_an_internal_error() {
        let (received, slots) = serve(partition_of(stream::iter([minibatch()]), 3));
        assert_eq!(received.len(), 2, "the minibatch, then the error");
        let status = received[1].as_ref().unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("after 1 of its 3 minibatches"));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn a_producer_that_panics_ends_the_stream_with_an_internal_error() {
        let panicking =
            stream::iter([minibatch()]).chain(stream::poll_fn(|_| -> Poll<Option<_>> {
                panic!("a fault in the producer")
            }));
        let (received, slots) = serve(partition_of(panicking, 2));
        let status = received.last().unwrap().as_ref().unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("a fault in the producer"));
        assert_eq!(slots.open(), 0);
    }

    #[test]
    fn a_producer_error_is_passed_on_and_ends_the_stream() {
        let failing = stream::iter([minibatch(), Err(Status::not_found("gone")), minibatch()]);
        let (received, _) = serve(partition_of(failing, 3));
        assert_eq!(received.len(), 2, "nothing follows the error");
        assert_eq!(received[1].as_ref().unwrap_err().code(), Code::NotFound);
    }

    #[test]
    fn a_query_result_has_no_expected_length() {
        let messages = stream::iter([Ok(FlightData::default())]).boxed();
        let (received, _) = serve(Produced::messages(messages));
        assert_eq!(received.len(), 1);
        assert!(received[0].is_ok());
    }

    #[test]
    fn a_stream_dropped_midway_frees_its_slot() {
        let slots = StreamSlots::new(StreamLimits {
            max_streams: 1,
            max_streams_per_client: 1,
        });
        let slot = slots.acquire(Client::UnixSocket).unwrap();
        let endless = partition_of(stream::repeat_with(minibatch), u64::MAX);
        let mut served = Served::new(endless, slot, Arc::default(), Span::none());
        assert!(block_on(served.next()).unwrap().is_ok());
        assert_eq!(slots.open(), 1);
        drop(served);
        assert_eq!(slots.open(), 0);
    }
}
