//! The one wrapper every DoGet stream passes through, whatever it serves
//! (a training partition, a query result): it holds the stream's slot,
//! counts what is sent, logs how the stream ended, and turns a producer
//! that panics or stops early into an error status, so a client never
//! sees a short stream end with OK.
//!
//! A client that stops reading stops the transport from polling its
//! stream (HTTP/2 flow control), so nothing inside the stream would ever
//! notice; a watchdog task beside it does. When the stream has not been
//! polled for the idle timeout (or a query runs past its deadline) the
//! watchdog drops the producer and the slot, and the stream's next poll,
//! whenever the client reads again, ends it with ABORTED (or
//! DEADLINE_EXCEEDED) saying why.

use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arrow_flight::FlightData;
use cellflight_engine::{EngineError, Partition};
use cellflight_sql::SqlError;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tonic::Status;
use tracing::Span;

use crate::error::ServiceError;
use crate::memory_budget::Reservation;
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
    /// When a query's time is up, whether or not its client reads.
    pub(crate) deadline: Option<QueryDeadline>,
    /// The stream's share of the server's memory budget, if it takes one.
    pub(crate) reservation: Option<Reservation>,
}

/// The end of a query's time: `at`, `limit` after it started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueryDeadline {
    pub(crate) at: Instant,
    pub(crate) limit: Duration,
}

impl QueryDeadline {
    /// `limit` from now.
    pub(crate) fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }
}

impl Produced {
    /// A query result (or any stream of plain messages), ended at `deadline`.
    pub(crate) fn query(
        messages: BoxStream<'static, Result<FlightData, Status>>,
        deadline: QueryDeadline,
    ) -> Self {
        Self {
            messages: messages.map(|m| m.map(Outgoing::Message)).boxed(),
            expected_minibatches: None,
            deadline: Some(deadline),
            reservation: None,
        }
    }

    /// A training partition: its preamble, then each minibatch with its
    /// position as app_metadata (docs/protocol.md); it holds `reservation`
    /// while it is open.
    pub(crate) fn partition(partition: Partition, reservation: Reservation) -> Self {
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
            deadline: None,
            reservation: Some(reservation),
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
    live: Arc<Mutex<Live>>,
    watchdog: AbortHandle,
    expected_minibatches: Option<u64>,
    metrics: Arc<Metrics>,
    span: Span,
    started: Instant,
    minibatches: u64,
    cells: u64,
    outcome: Option<Outcome>,
}

/// The producer, and the stream's slot and memory it frees when dropped.
struct Held {
    produced: BoxStream<'static, Result<Outgoing, Status>>,
    _slot: StreamSlot,
    _reservation: Option<Reservation>,
}

/// What a stream holds while it is open, and what the watchdog takes
/// from it when the client stops reading.
struct Live {
    /// What the stream holds; none once it ended or the watchdog reclaimed it.
    held: Option<Held>,
    /// Why the watchdog reclaimed them, told at the next poll.
    reclaimed: Option<Status>,
    last_polled: Instant,
    /// Who polled last: the watchdog wakes it after reclaiming, as the
    /// producer it drops would have (a query pending past its deadline
    /// would otherwise never be polled again).
    waker: Option<Waker>,
}

impl Served {
    /// Serves `produced` while holding `slot`, counted in `metrics` and
    /// logged in `span`; reclaimed after `idle_timeout` unread.
    pub(crate) fn new(
        produced: Produced,
        slot: StreamSlot,
        idle_timeout: Duration,
        metrics: Arc<Metrics>,
        span: Span,
    ) -> Self {
        metrics.stream_started();
        let live = Arc::new(Mutex::new(Live {
            held: Some(Held {
                produced: produced.messages,
                _slot: slot,
                _reservation: produced.reservation,
            }),
            reclaimed: None,
            last_polled: Instant::now(),
            waker: None,
        }));
        let watchdog = Watchdog {
            live: Arc::downgrade(&live),
            idle_timeout,
            deadline: produced.deadline,
            span: span.clone(),
        };
        Self {
            live,
            watchdog: tokio::spawn(watchdog.run()).abort_handle(),
            expected_minibatches: produced.expected_minibatches,
            metrics,
            span,
            started: Instant::now(),
            minibatches: 0,
            cells: 0,
            outcome: None,
        }
    }

    /// The producer's next message, or its panic as an error, or why the
    /// watchdog took it.
    fn poll_produced(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Outgoing, Status>>> {
        let mut live = lock(&self.live);
        live.last_polled = Instant::now();
        if !live.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            live.waker = Some(cx.waker().clone());
        }
        if let Some(status) = live.reclaimed.take() {
            return Poll::Ready(Some(Err(status)));
        }
        let Some(Held { produced, .. }) = live.held.as_mut() else {
            return Poll::Ready(None);
        };
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
        lock(&self.live).held = None;
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
        self.watchdog.abort();
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

/// The task beside a stream that reclaims it from a client that stopped
/// reading, or from a query past its deadline; see the module docs.
struct Watchdog {
    live: Weak<Mutex<Live>>,
    idle_timeout: Duration,
    deadline: Option<QueryDeadline>,
    span: Span,
}

impl Watchdog {
    async fn run(self) {
        loop {
            let Some(wake) = self.next_check() else {
                return;
            };
            tokio::time::sleep_until(wake).await;
            let Some(live) = self.live.upgrade() else {
                return;
            };
            let mut live = lock(&live);
            if live.held.is_none() {
                return;
            }
            if let Some(status) = self.reclaim_status(live.last_polled) {
                let _entered = self.span.enter();
                tracing::warn!(reason = status.message(), "stream reclaimed");
                live.held = None;
                live.reclaimed = Some(status);
                if let Some(waker) = live.waker.take() {
                    waker.wake();
                }
                return;
            }
        }
    }

    /// When the stream may next be due: its idle timeout from its last
    /// poll, or the query's deadline if sooner; none once it is gone.
    fn next_check(&self) -> Option<Instant> {
        let live = self.live.upgrade()?;
        let idle_at = lock(&live).last_polled + self.idle_timeout;
        Some(match self.deadline {
            Some(deadline) => idle_at.min(deadline.at),
            None => idle_at,
        })
    }

    /// Why the stream must end now, if it must.
    fn reclaim_status(&self, last_polled: Instant) -> Option<Status> {
        let now = Instant::now();
        if let Some(deadline) = self.deadline.filter(|d| now >= d.at) {
            let error = SqlError::Timeout {
                limit: deadline.limit,
            };
            return Some(Status::from(ServiceError::from(error)));
        }
        (now >= last_polled + self.idle_timeout).then(|| {
            Status::from(ServiceError::Aborted(format!(
                "the client read nothing for {:?} (--stream-idle-timeout), so the stream was released; \
                 request the partition again from the next batch (start_batch)",
                self.idle_timeout
            )))
        })
    }
}

/// The lock of a stream's state; a panic elsewhere leaves it consistent
/// (each update is one assignment).
fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    live.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use tonic::Code;

    use super::*;
    use crate::stream_slots::{Client, StreamLimits, StreamSlots};

    const PATIENT: Duration = Duration::from_secs(3600);

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
            deadline: None,
            reservation: None,
        }
    }

    fn one_slot() -> Arc<StreamSlots> {
        StreamSlots::new(StreamLimits {
            max_streams: 1,
            max_streams_per_client: 1,
            idle_timeout: PATIENT,
        })
    }

    /// `produced` served on a server with one stream slot, reclaimed after
    /// `idle_timeout`; and the slots, to see whether the stream freed its own.
    fn served(produced: Produced, idle_timeout: Duration) -> (Served, Arc<StreamSlots>) {
        let slots = one_slot();
        let slot = slots.acquire(Client::UnixSocket).unwrap();
        let served = Served::new(produced, slot, idle_timeout, Arc::default(), Span::none());
        (served, slots)
    }

    /// What a client reading `produced` to its end receives.
    async fn serve(produced: Produced) -> (Vec<Result<FlightData, Status>>, Arc<StreamSlots>) {
        let (served, slots) = served(produced, PATIENT);
        (served.collect().await, slots)
    }

    #[tokio::test]
    async fn a_complete_partition_ends_with_ok_and_frees_its_slot() {
        let (received, slots) =
            serve(partition_of(stream::iter([minibatch(), minibatch()]), 2)).await;
        assert_eq!(received.len(), 2);
        assert!(received.iter().all(Result::is_ok));
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test]
    async fn a_partition_that_ends_short_ends_with_an_internal_error() {
        let (received, slots) = serve(partition_of(stream::iter([minibatch()]), 3)).await;
        assert_eq!(received.len(), 2, "the minibatch, then the error");
        let status = received[1].as_ref().unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("after 1 of its 3 minibatches"));
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test]
    async fn a_producer_that_panics_ends_the_stream_with_an_internal_error() {
        let panicking =
            stream::iter([minibatch()]).chain(stream::poll_fn(|_| -> Poll<Option<_>> {
                panic!("a fault in the producer")
            }));
        let (received, slots) = serve(partition_of(panicking, 2)).await;
        let status = received.last().unwrap().as_ref().unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("a fault in the producer"));
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test]
    async fn a_producer_error_is_passed_on_and_ends_the_stream() {
        let failing = stream::iter([minibatch(), Err(Status::not_found("gone")), minibatch()]);
        let (received, _) = serve(partition_of(failing, 3)).await;
        assert_eq!(received.len(), 2, "nothing follows the error");
        assert_eq!(received[1].as_ref().unwrap_err().code(), Code::NotFound);
    }

    #[tokio::test]
    async fn a_query_result_has_no_expected_length() {
        let messages = stream::iter([Ok(FlightData::default())]).boxed();
        let deadline = QueryDeadline::after(PATIENT);
        let (received, _) = serve(Produced::query(messages, deadline)).await;
        assert_eq!(received.len(), 1);
        assert!(received[0].is_ok());
    }

    #[tokio::test]
    async fn a_stream_dropped_midway_frees_its_slot() {
        let endless = partition_of(stream::repeat_with(minibatch), u64::MAX);
        let (mut served, slots) = served(endless, PATIENT);
        assert!(served.next().await.unwrap().is_ok());
        assert_eq!(slots.open(), 1);
        drop(served);
        assert_eq!(slots.open(), 0);
    }

    #[tokio::test]
    async fn a_stream_left_unread_past_its_idle_timeout_is_released_and_ends_aborted() {
        let endless = partition_of(stream::repeat_with(minibatch), u64::MAX);
        let (mut served, slots) = served(endless, Duration::from_millis(50));
        assert!(served.next().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            slots.open(),
            0,
            "the slot is free before the client reads again"
        );
        let status = served.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::Aborted);
        assert!(
            status.message().contains("--stream-idle-timeout"),
            "{status}"
        );
        assert!(status.message().contains("start_batch"), "{status}");
        assert!(served.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_read_more_often_than_its_idle_timeout_is_never_released() {
        let endless = partition_of(stream::repeat_with(minibatch), u64::MAX);
        let (mut served, slots) = served(endless, Duration::from_millis(200));
        for _ in 0..10 {
            assert!(served.next().await.unwrap().is_ok());
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        assert_eq!(slots.open(), 1);
    }

    #[tokio::test]
    async fn a_query_still_running_at_its_deadline_ends_with_deadline_exceeded() {
        let running = stream::pending().boxed();
        let deadline = QueryDeadline::after(Duration::from_millis(50));
        let (mut served, _slots) = served(Produced::query(running, deadline), PATIENT);
        let next = tokio::time::timeout(Duration::from_secs(5), served.next()).await;
        let status = next
            .expect("the stream is woken at its deadline")
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
    }

    #[tokio::test]
    async fn a_query_past_its_deadline_ends_even_while_its_client_reads_nothing() {
        let endless = stream::repeat_with(|| Ok(FlightData::default())).boxed();
        let deadline = QueryDeadline::after(Duration::from_millis(50));
        let (mut served, slots) = served(Produced::query(endless, deadline), PATIENT);
        assert!(served.next().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(slots.open(), 0);
        let status = served.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), Code::DeadlineExceeded);
    }
}
