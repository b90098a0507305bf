//! What the server has done, as Prometheus counters: streams, minibatches,
//! cells and bytes sent, and failed calls by gRPC code. Served in the text
//! exposition format on the `--metrics` port (`GET /metrics`).

use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use cellflight_store::RemoteReadStats;
use tonic::codegen::http;

/// gRPC status codes by number, as the gRPC specification names them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    streams_started: AtomicU64,
    minibatches_sent: AtomicU64,
    cells_sent: AtomicU64,
    bytes_sent: AtomicU64,
    /// Calls that failed, by gRPC code (index 0, OK, stays 0).
    errors: [AtomicU64; CODE_NAMES.len()],
}

impl Metrics {
    pub(crate) fn stream_started(&self) {
        self.streams_started.fetch_add(1, Ordering::Relaxed);
    }

    /// One minibatch of `cells` cells, `bytes` of message body, handed to
    /// the transport.
    pub(crate) fn minibatch_sent(&self, cells: usize, bytes: usize) {
        self.minibatches_sent.fetch_add(1, Ordering::Relaxed);
        self.cells_sent.fetch_add(cells as u64, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, code: tonic::Code) {
        if let Some(count) = self.errors.get(code as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A call's response headers: a call that fails before it streams
    /// carries its status there (gRPC's trailers-only response).
    pub(crate) fn response(&self, headers: &http::HeaderMap) {
        let code = headers
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<i32>().ok())
            .map(tonic::Code::from_i32);
        if let Some(code) = code.filter(|&code| code != tonic::Code::Ok) {
            self.failed(code);
        }
    }

    /// Everything, in Prometheus' text format, with `open_streams` as the
    /// one gauge.
    /// The counters, and the gauges of the streams open and the memory
    /// they have reserved, in Prometheus' text format.
    pub(crate) fn render(
        &self,
        open_streams: usize,
        memory_reserved: u64,
        remote: Option<RemoteReadStats>,
    ) -> String {
        let mut text = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        let counter = |count: &AtomicU64| vec![(String::new(), count.load(Ordering::Relaxed))];
        metric(
            "cellflight_streams_open",
            "gauge",
            "DoGet streams open now.",
            &[(String::new(), open_streams as u64)],
        );
        metric(
            "cellflight_memory_reserved_bytes",
            "gauge",
            "Bytes of --max-memory reserved by open training streams.",
            &[(String::new(), memory_reserved)],
        );
        metric(
            "cellflight_streams_started_total",
            "counter",
            "DoGet streams opened.",
            &counter(&self.streams_started),
        );
        metric(
            "cellflight_minibatches_sent_total",
            "counter",
            "Training minibatches sent.",
            &counter(&self.minibatches_sent),
        );
        metric(
            "cellflight_cells_sent_total",
            "counter",
            "Cells sent in training minibatches, padding included.",
            &counter(&self.cells_sent),
        );
        metric(
            "cellflight_bytes_sent_total",
            "counter",
            "Bytes of training minibatch bodies sent.",
            &counter(&self.bytes_sent),
        );
        let errors: Vec<(String, u64)> = CODE_NAMES
            .iter()
            .zip(&self.errors)
            .skip(1)
            .map(|(name, count)| {
                (
                    format!("{{code=\"{name}\"}}"),
                    count.load(Ordering::Relaxed),
                )
            })
            .collect();
        metric(
            "cellflight_errors_total",
            "counter",
            "Calls that failed, by gRPC status code.",
            &errors,
        );
        if let Some(remote) = remote {
            for (name, kind, help, value) in [
                (
                    "cellflight_object_store_gets_total",
                    "counter",
                    "Ranged GETs of matrix blocks from the object store.",
                    remote.gets,
                ),
                (
                    "cellflight_object_store_bytes_total",
                    "counter",
                    "Bytes of matrix blocks fetched from the object store.",
                    remote.bytes_fetched,
                ),
                (
                    "cellflight_block_cache_hits_total",
                    "counter",
                    "Matrix blocks read from the block cache.",
                    remote.blocks_from_cache,
                ),
                (
                    "cellflight_block_cache_rejected_total",
                    "counter",
                    "Cached blocks found damaged, deleted and fetched again.",
                    remote.blocks_rejected,
                ),
                (
                    "cellflight_block_cache_bytes",
                    "gauge",
                    "Bytes of the block cache's files.",
                    remote.cache_bytes,
                ),
                (
                    "cellflight_block_cache_capacity_bytes",
                    "gauge",
                    "--cache-size.",
                    remote.cache_capacity,
                ),
            ] {
                metric(name, kind, help, &[(String::new(), value)]);
            }
        }
        text
    }
}

/// A tower layer that counts every failed call in [`Metrics`], whatever
/// service answered it (Flight, Flight SQL, health).
#[derive(Debug, Clone)]
pub struct CountFailures {
    metrics: Arc<Metrics>,
}

impl CountFailures {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for CountFailures {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, Request, Body> tower::Service<Request> for Counted<S>
where
    S: tower::Service<Request, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    Body: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let response = self.inner.call(request);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let response = response.await?;
            metrics.response(response.headers());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.stream_started();
        metrics.minibatch_sent(64, 1000);
        metrics.minibatch_sent(10, 200);
        metrics.failed(tonic::Code::ResourceExhausted);
        let text = metrics.render(3, 0, None);
        for line in [
            "# TYPE cellflight_streams_open gauge",
            "cellflight_streams_open 3",
            "cellflight_streams_started_total 1",
            "cellflight_minibatches_sent_total 2",
            "cellflight_cells_sent_total 74",
            "cellflight_bytes_sent_total 1200",
            "cellflight_errors_total{code=\"RESOURCE_EXHAUSTED\"} 1",
            "cellflight_errors_total{code=\"NOT_FOUND\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(!text.contains("code=\"OK\""));
    }

    #[test]
    fn a_failed_call_is_counted_from_its_trailers_only_headers() {
        let metrics = Metrics::default();
        let mut headers = http::HeaderMap::new();
        metrics.response(&headers); // a streaming call: status comes later
        headers.insert("grpc-status", "5".parse().unwrap());
        metrics.response(&headers);
        headers.insert("grpc-status", "0".parse().unwrap());
        metrics.response(&headers);
        assert!(metrics
            .render(0, 0, None)
            .contains("cellflight_errors_total{code=\"NOT_FOUND\"} 1"));
        assert_eq!(
            metrics
                .errors
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<u64>(),
            1
        );
    }
}
