//! `--max-request-size`. tonic refuses a message over the limit from its
//! length prefix, before reading it, but as OUT_OF_RANGE with its own
//! words; this layer answers such refusals as gRPC itself does
//! (RESOURCE_EXHAUSTED), naming the flag.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

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

    #[test]
    fn other_statuses_are_left_alone() {
        assert!(over_limit(&Status::out_of_range("start_batch past the end"), 1).is_none());
        assert!(over_limit(&Status::invalid_argument(TOO_LARGE), 1).is_none());
    }
}
