//! `--max-request-size`. tonic refuses a message over the limit from its
//! length prefix, before reading it, but as OUT_OF_RANGE with its own
//! words; this layer answers such refusals as gRPC itself does
//! (RESOURCE_EXHAUSTED), naming the flag. A DoPut is a stream of messages,
//! each bounded by tonic: [`whole_put_within`] bounds their sum.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use arrow_flight::error::FlightError;
use arrow_flight::FlightData;
use futures::{Stream, StreamExt};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::{Code, Status};

use crate::error::ServiceError;

/// How tonic starts the message of a refusal for size.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// The refusal of a client message over `limit` bytes, if `status` is
/// tonic's; other statuses are left alone.
pub(crate) fn over_limit(status: &Status, limit: usize) -> Option<ServiceError> {
    let too_large = status.code() == Code::OutOfRange && status.message().starts_with(TOO_LARGE);
    too_large.then(|| {
        let found = status
            .message()
            .split("found ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or("more");
        ServiceError::ResourceExhausted(format!(
            "the request message is {found} bytes, over the server's --max-request-size of {limit} bytes"
        ))
    })
}

/// The messages of one DoPut, ended with RESOURCE_EXHAUSTED at the first
/// that takes their total past `limit` bytes: otherwise many messages each
/// under the limit would add up to any size held in memory.
pub(crate) fn whole_put_within<S>(
    messages: S,
    limit: usize,
) -> impl Stream<Item = Result<FlightData, FlightError>>
where
    S: Stream<Item = Result<FlightData, FlightError>>,
{
    let mut total = 0usize;
    messages.map(move |message| {
        let message = message?;
        total = total.saturating_add(message.encoded_len());
        if total > limit {
            let refusal = ServiceError::ResourceExhausted(format!(
                "the DoPut's messages together pass the server's --max-request-size of {limit} bytes (it bounds a whole DoPut, not each message)"
            ));
            return Err(FlightError::ExternalError(Box::new(refusal)));
        }
        Ok(message)
    })
}

#[derive(Debug, Clone, Copy)]
pub struct RequestSizeLimit {
    limit: usize,
}

impl RequestSizeLimit {
    pub(crate) fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> tower::Layer<S> for RequestSizeLimit {
    type Service = SizeLimited<S>;

    fn layer(&self, inner: S) -> SizeLimited<S> {
        SizeLimited {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SizeLimited<S> {
    inner: S,
    limit: usize,
}

impl<S, Request> tower::Service<Request> for SizeLimited<S>
where
    S: tower::Service<Request, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let response = self.inner.call(request);
        let limit = self.limit;
        Box::pin(async move {
            let response = response.await?;
            // A request refused before any answer is a trailers-only
            // response: its status is in the headers.
            let refusal = Status::from_header_map(response.headers())
                .and_then(|status| over_limit(&status, limit));
            Ok(match refusal {
                Some(error) => Status::from(error).into_http(),
                None => response,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_size_refusal_becomes_resource_exhausted_naming_the_flag() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 20000000 bytes, the limit is: 16777216 bytes",
        );
        let error = over_limit(&tonic, 16 << 20).unwrap();
        let status = Status::from(error);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("20000000 bytes"));
        assert!(status
            .message()
            .contains("--max-request-size of 16777216 bytes"));
    }

    #[tokio::test]
    async fn a_put_is_refused_once_its_messages_together_pass_the_limit() {
        let message = FlightData::new().with_data_body(vec![0u8; 1000]);
        let size = message.encoded_len();
        let messages = futures::stream::iter(vec![message; 5].into_iter().map(Ok));
        let passed: Vec<_> = whole_put_within(messages, 3 * size).collect().await;
        assert!(passed[..3].iter().all(Result::is_ok));
        let Err(FlightError::ExternalError(refusal)) = &passed[3] else {
            panic!("the fourth message passes the limit: {passed:?}");
        };
        let status = match refusal.downcast_ref::<ServiceError>() {
            Some(ServiceError::ResourceExhausted(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(status.contains(&format!("--max-request-size of {} bytes", 3 * size)));
    }

    #[test]
    fn other_statuses_are_left_alone() {
        assert!(over_limit(&Status::out_of_range("start_batch past the end"), 1).is_none());
        assert!(over_limit(&Status::invalid_argument(TOO_LARGE), 1).is_none());
    }
}
