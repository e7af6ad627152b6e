//! The circuit breaker for gRPC clients: the same [`Breaker`], judging
//! each call by its `grpc-status`, wherever it arrives.
//!
//! # Why a breaker of its own
//!
//! A gRPC server answers HTTP `200` to every call it handles, failed or
//! not; the status comes in the `grpc-status` trailer after the messages,
//! or, for most errors, in the head of a "trailers-only" answer. An HTTP
//! breaker sees the `200` and counts a success, so an `UNAVAILABLE`
//! dependency would never open its circuit. This one waits for the status.
//!
//! ```
//! use tower::ServiceBuilder;
//! use tower_circuit::breaker::{Breaker, Config};
//! use tower_circuit::grpc::StatusLayer;
//!
//! # fn build<S>(http2_client: S) {
//! let breaker = Breaker::new("user-service", Config::default()).unwrap();
//! let channel = ServiceBuilder::new()
//!     .layer(StatusLayer::new()) // our errors as `tonic::Status`
//!     .layer(breaker.grpc_layer())
//!     .service(http2_client);
//! // tonic::client::Grpc::new(channel), or a generated client's `new(channel)`
//! # drop(channel);
//! # }
//! ```
//!
//! # When the outcome is decided
//!
//! - An error from the inner service (transport, timeout) is a failure;
//!   one cut short by the caller's deadline is ignored, as for HTTP.
//! - A `grpc-status` in the response head is classified at once.
//! - An HTTP status other than `200` without `grpc-status` comes from
//!   something in front of the server, or from something that is not a
//!   gRPC server: it gets the code gRPC's HTTP mapping gives it (`400` →
//!   `INTERNAL`, `401` → `UNAUTHENTICATED`, `403` → `PERMISSION_DENIED`,
//!   `404` → `UNIMPLEMENTED`, `429`, `502`, `503`, `504` → `UNAVAILABLE`,
//!   any other → `UNKNOWN`) and that code is classified. With the default
//!   rule only `401` and `403` are not failures.
//! - Otherwise the call moves into the [`ResponseBody`], which records it
//!   at the end of the stream: see there. Read the body to its end (tonic
//!   does, for every call it completes) or the call is not counted.
//!
//! Codes are judged by a [`ClassifyCode`], by default
//! [`ServerCodesAsFailures`]. Before
//! it is asked, a `DEADLINE_EXCEEDED` answer that carries
//! `x-request-budget-ms: 0` (the server saying the budget this caller sent
//! ran out there), to a request that had a deadline, is ignored.
//!
//! Everything else is the HTTP breaker's: admission, the states, the
//! fail-fast `poll_ready` and the [`CircuitOpen`](crate::breaker::CircuitOpen)
//! rejection. With the slow-call rule on, a call lasts until its status
//! is known: for a server stream, until its end.

pub mod future;

mod body;
mod layer;

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

pub use self::body::ResponseBody;
pub use self::layer::GrpcBreakerLayer;

use self::body::Pending;
use self::future::ResponseFuture;
use super::ClassifyCode;
use super::ServerCodesAsFailures;
use super::classify::GRPC_TIMEOUT;
use crate::BoxError;
use crate::breaker::{Breaker, FoundOpen};
use crate::timeout::Deadline;

/// Guards a gRPC client service with a [`Breaker`], judging each call by
/// its `grpc-status`. Built by [`GrpcBreakerLayer`]; every clone shares
/// the breaker.
///
/// While the circuit is open, `poll_ready` is ready at once without asking
/// the inner service and the call fails with
/// [`CircuitOpen`](crate::breaker::CircuitOpen), as with the HTTP breaker.
#[derive(Debug)]
pub struct GrpcCircuitBreaker<S, C = ServerCodesAsFailures> {
    inner: S,
    breaker: Breaker,
    classifier: C,
    /// `poll_ready` found the circuit open and did not poll the inner
    /// service, so the next call must not reach it; what it found is what
    /// the rejection reports.
    reject_next: Option<FoundOpen>,
}

impl<S: Clone, C: Clone> Clone for GrpcCircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready.
        GrpcCircuitBreaker {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            reject_next: None,
        }
    }
}

impl<S> GrpcCircuitBreaker<S> {
    /// Guards `inner` with `breaker`, with the default classifier.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        GrpcCircuitBreaker::with_classifier(inner, breaker, ServerCodesAsFailures)
    }
}

impl<S, C> GrpcCircuitBreaker<S, C> {
    /// Guards `inner` with `breaker`, judging codes with `classifier`.
    pub fn with_classifier(inner: S, breaker: Breaker, classifier: C) -> Self {
        GrpcCircuitBreaker {
            inner,
            breaker,
            classifier,
            reject_next: None,
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, ReqB, ResB> Service<Request<ReqB>> for GrpcCircuitBreaker<S, C>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError> + 'static,
    C: ClassifyCode + Clone,
{
    type Response = Response<ResponseBody<ResB, C>>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Fail fast, as the HTTP breaker does: see `CircuitBreaker`.
        if let Some(found) = self.breaker.found_open() {
            self.reject_next = Some(found);
            return Poll::Ready(Ok(()));
        }
        self.reject_next = None;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        if let Some(found) = self.reject_next.take() {
            return ResponseFuture::rejected(self.breaker.reject_unready(found));
        }
        match self.breaker.admit() {
            Ok(guard) => {
                // Read before the request goes: only a call that had a
                // deadline can have run out of it at the server.
                let had_deadline =
                    req.headers().contains_key(GRPC_TIMEOUT) || Deadline::of(&req).is_some();
                let call = Pending::new(guard, self.classifier.clone(), had_deadline);
                ResponseFuture::called(self.inner.call(req), call)
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
