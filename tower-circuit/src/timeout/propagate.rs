//! Deadline propagation across processes over plain HTTP and gRPC.
//!
//! The client sends the time left in the [`BUDGET_HEADER`] header, in whole
//! milliseconds, relative rather than absolute (as gRPC's `grpc-timeout`
//! does), so the two hosts' clocks need not agree. The server starts its
//! own deadline from it, never later than its own timeout, and makes it
//! the deadline of every call the handler makes. "Service timeout <
//! gateway timeout < client timeout" then holds by construction: each hop
//! gets what is left, less the time already spent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{DEADLINE_EXCEEDED, GRPC_STATUS};
use super::deadline::Deadline;
use super::error::Elapsed;
use super::grpc_timeout::{GRPC_TIMEOUT_HEADER, format_grpc_timeout, parse_grpc_timeout};
use crate::BoxError;
use crate::grpc::is_grpc;

/// The header that carries the caller's remaining budget, in milliseconds.
pub const BUDGET_HEADER: HeaderName = HeaderName::from_static("x-request-budget-ms");

// === client side ===

/// Sends the request's remaining budget (see [`Deadline::of`]) in
/// [`BUDGET_HEADER`] and, for a gRPC call (`content-type:
/// application/grpc`), in [`grpc-timeout`](super::GRPC_TIMEOUT_HEADER) too
/// (to the microsecond or finer, rounded down), unless the caller set a
/// smaller `grpc-timeout` itself, which is kept; fails at once, without sending, when less than
/// [`min_budget`](Self::min_budget) (by default a millisecond) is left.
///
/// Both ways of running out of budget end in a deadline [`Elapsed`]
/// (`is_deadline()`), which the circuit breaker does not count and the
/// retry layer does not retry: too little time left before sending, and a
/// `504` from a [`ServerDeadline`](super::ServerDeadline) saying that the budget *this layer sent*
/// ran out there (it marks such answers with `x-request-budget-ms: 0`), or
/// for a gRPC call a `DEADLINE_EXCEEDED` in the answer's headers carrying
/// the same mark.
/// Either way the caller's deadline, not the dependency's health, ended
/// the call; counting it would let any caller with a tiny budget open the
/// breaker of a healthy dependency for everyone.
#[derive(Debug, Clone, Copy)]
pub struct PropagateDeadlineLayer {
    min_budget: Duration,
}

impl Default for PropagateDeadlineLayer {
    fn default() -> Self {
        PropagateDeadlineLayer {
            min_budget: Duration::from_millis(1),
        }
    }
}

impl PropagateDeadlineLayer {
    /// The layer.
    pub fn new() -> Self {
        PropagateDeadlineLayer::default()
    }

    /// Fails the call at once, without sending it, when less than `floor`
    /// is left (never less than a millisecond: the header counts whole
    /// milliseconds). Set it to the servers' own
    /// [`ServerDeadlineLayer::min_budget`](super::ServerDeadlineLayer::min_budget), so that the client gives up
    /// where the server would refuse anyway, one round trip sooner.
    pub fn min_budget(mut self, floor: Duration) -> Self {
        self.min_budget = floor.max(Duration::from_millis(1));
        self
    }
}

impl<S> Layer<S> for PropagateDeadlineLayer {
    type Service = PropagateDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateDeadline {
            inner,
            min_budget: self.min_budget,
        }
    }
}

/// Sends the remaining budget downstream. Built by [`PropagateDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct PropagateDeadline<S> {
    inner: S,
    min_budget: Duration,
}

impl<S> PropagateDeadline<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, ResB> Service<Request<B>> for PropagateDeadline<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = PropagateFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let mut sent = None;
        let mut grpc = false;
        if let Some(deadline) = Deadline::of(&req) {
            let remaining = deadline.remaining();
            if remaining < self.min_budget {
                let error = Some(Elapsed::deadline(remaining));
                return PropagateFuture {
                    kind: PropagateKind::Expired { error },
                };
            }
            // Whole milliseconds, rounded down: the next hop must not
            // believe it has more time than there is. `min_budget` is at
            // least 1 ms, so this is never 0.
            let millis = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
            req.headers_mut()
                .insert(BUDGET_HEADER, millis_value(millis));
            sent = Some(Duration::from_millis(millis));
            // Only calls with a deadline pay for this look-up.
            grpc = is_grpc(req.headers());
            if grpc {
                write_grpc_timeout(req.headers_mut(), remaining);
            }
        }
        PropagateFuture {
            kind: PropagateKind::Called {
                inner: self.inner.call(req),
                sent,
                grpc,
            },
        }
    }
}

pin_project! {
    /// Response future of [`PropagateDeadline`].
    #[derive(Debug)]
    pub struct PropagateFuture<F> {
        #[pin]
        kind: PropagateKind<F>,
    }
}

pin_project! {
    #[project = PropagateProj]
    #[derive(Debug)]
    enum PropagateKind<F> {
        Called {
            #[pin]
            inner: F,
            // The budget sent, if any: only then can a `504` be about it.
            sent: Option<Duration>,
            // Whether the call is gRPC, whose servers answer in `grpc-status`.
            grpc: bool,
        },
        Expired {
            error: Option<Elapsed>,
        },
    }
}

impl<F, B, E> Future for PropagateFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            PropagateProj::Called { inner, sent, grpc } => {
                let res = ready!(inner.poll(cx)).map_err(Into::into)?;
                match sent {
                    Some(sent) if budget_ran_out(&res, *grpc) => {
                        Poll::Ready(Err(Box::new(Elapsed::deadline(*sent))))
                    }
                    _ => Poll::Ready(Ok(res)),
                }
            }
            PropagateProj::Expired { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}

/// `millis` in decimal, as a header value, in one allocation of exactly
/// its length: `HeaderValue::from(u64)` takes two (a 20-byte buffer, then
/// a shared handle, because the buffer is longer than the text).
fn millis_value(mut millis: u64) -> HeaderValue {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (millis % 10) as u8;
        millis /= 10;
        if millis == 0 {
            break;
        }
    }
    HeaderValue::from_bytes(&digits[start..]).expect("ASCII digits are a valid header value")
}

/// Whether `res` is a [`ServerDeadline`](super::ServerDeadline)'s answer that the caller's budget
/// ran out there: [`BUDGET_HEADER`] `0` on a `504` or, for a gRPC call, on
/// a `DEADLINE_EXCEEDED` in the headers (a trailers-only answer).
fn budget_ran_out<B>(res: &Response<B>, grpc: bool) -> bool {
    let status = if grpc {
        res.headers().get(&GRPC_STATUS) == Some(&DEADLINE_EXCEEDED)
    } else {
        res.status() == StatusCode::GATEWAY_TIMEOUT
    };
    status && res.headers().get(&BUDGET_HEADER).map(HeaderValue::as_bytes) == Some(b"0")
}

/// Writes `grpc-timeout` for a gRPC call: the time left, unless the
/// caller already set a smaller one (tonic's `Request::set_timeout`), which
/// is kept as it is. A malformed one of the caller's is replaced.
fn write_grpc_timeout(headers: &mut HeaderMap, left: Duration) {
    let callers = headers
        .get(&GRPC_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|text| parse_grpc_timeout(text).ok());
    if callers.is_some_and(|callers| callers <= left) {
        return;
    }
    headers.insert(
        GRPC_TIMEOUT_HEADER,
        format_grpc_timeout(left).to_header_value(),
    );
}

#[cfg(test)]
mod tests {
    use super::millis_value;

    #[test]
    fn millis_are_written_in_decimal_whole() {
        for millis in [0, 1, 9, 10, 99, 1_000, 14_999, 1_234_567_890, u64::MAX] {
            assert_eq!(
                millis_value(millis).as_bytes(),
                millis.to_string().as_bytes()
            );
        }
    }
}
