//! The tower layer that authenticates every call before any service sees
//! it, and hands the services the [`Caller`] as a request extension.

use std::task::{Context, Poll};

use futures::future::{self, Either, Ready};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

use cellflight_engine::Caller;

use super::Authenticator;

/// Calls answered without a token: the Handshake that hands one out, and
/// the health service that probes (which carry no credentials) call.
/// Exact paths: a prefix would also open any method named after them.
const OPEN_PATHS: [&str; 3] = [
    "/arrow.flight.protocol.FlightService/Handshake",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

#[derive(Debug, Clone)]
pub struct Authenticate {
    authenticator: Authenticator,
}

impl Authenticate {
    pub(crate) fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }
}

impl<S> tower::Layer<S> for Authenticate {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            authenticator: self.authenticator.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Authenticator,
}

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if OPEN_PATHS.contains(&path) {
            return Either::Left(self.inner.call(request));
        }
        match self.authenticator.caller(request.headers()) {
            Ok(caller) => {
                request.extensions_mut().insert::<Caller>(caller);
                Either::Left(self.inner.call(request))
            }
            Err(error) => {
                tracing::info!(path, %error, "call refused");
                let refused = Status::from(error).into_http::<Body>();
                Either::Right(future::ready(Ok(refused)))
            }
        }
    }
}
