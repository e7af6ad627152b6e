//! Deadline propagation across processes over plain HTTP.
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

use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep_until};
use tower_layer::Layer;
use tower_service::Service;

use super::deadline::{Deadline, Scoped};
use super::error::Elapsed;
use crate::BoxError;

/// The header that carries the caller's remaining budget, in milliseconds.
pub const BUDGET_HEADER: HeaderName = HeaderName::from_static("x-request-budget-ms");

// === client side ===

/// Sends the request's remaining budget (see [`Deadline::of`]) in
/// [`BUDGET_HEADER`]; fails at once, without sending, when less than
/// [`min_budget`](Self::min_budget) (by default a millisecond) is left.
///
/// Both ways of running out of budget end in a deadline [`Elapsed`]
/// (`is_deadline()`), which the circuit breaker does not count and the
/// retry layer does not retry: too little time left before sending, and a
/// `504` from a [`ServerDeadline`] saying that the budget *this layer sent*
/// ran out there (it marks such answers with `x-request-budget-ms: 0`).
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
    /// [`ServerDeadlineLayer::min_budget`], so that the client gives up
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
                .insert(BUDGET_HEADER, HeaderValue::from(millis));
            sent = Some(Duration::from_millis(millis));
        }
        PropagateFuture {
            kind: PropagateKind::Called {
                inner: self.inner.call(req),
                sent,
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
            PropagateProj::Called { inner, sent } => {
                let res = ready!(inner.poll(cx)).map_err(Into::into)?;
                match sent {
                    Some(sent) if budget_ran_out(&res) => {
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

/// Whether `res` is a [`ServerDeadline`]'s answer that the caller's budget
/// ran out there: `504` with [`BUDGET_HEADER`] `0`.
fn budget_ran_out<B>(res: &Response<B>) -> bool {
    res.status() == StatusCode::GATEWAY_TIMEOUT
        && res.headers().get(&BUDGET_HEADER).map(HeaderValue::as_bytes) == Some(b"0")
}

/// A `504` that says the caller's budget, not the server, ran out.
fn budget_exhausted<B: From<String>>(message: &str) -> Response<B> {
    let mut res = json_error(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", message);
    res.headers_mut()
        .insert(BUDGET_HEADER, HeaderValue::from_static("0"));
    res
}

// === server side ===

/// Bounds each request a server handles by the smaller of its own timeout
/// and the budget the caller sent, and makes that deadline the one every
/// outbound call of the handler inherits.
///
/// When the budget runs out, answers `504 Gateway Timeout` with a JSON body
/// `{"error":"deadline_exceeded","message":...}`; when it was the caller's
/// budget that ran out (not this server's own timeout), the answer also
/// carries `x-request-budget-ms: 0`, which tells a [`PropagateDeadline`]
/// client that its deadline, not this server's health, ended the call; a [`BUDGET_HEADER`] that
/// is not a whole number of milliseconds gets `400 Bad Request` with
/// `{"error":"invalid_budget_header",...}` and the handler is not called.
/// The header must be `1*DIGIT` (no sign, spaces or fraction); the body
/// never echoes the value sent. With [`min_budget`](Self::min_budget), a
/// budget below the floor is answered `504` at once (same JSON body,
/// `"deadline_exceeded"`) without calling the handler.
/// The service's error type is the inner one, so it fits axum's infallible
/// services.
#[derive(Debug, Clone, Copy)]
pub struct ServerDeadlineLayer {
    own: Duration,
    min_budget: Duration,
}

impl ServerDeadlineLayer {
    /// `own` is the longest this server gives any request.
    pub fn new(own: Duration) -> Self {
        ServerDeadlineLayer {
            own,
            min_budget: Duration::ZERO,
        }
    }

    /// Answers `504` at once, without calling the handler, when the caller
    /// sends a budget below `floor` (default zero: never). A request with
    /// a few milliseconds left cannot reach a dependency and back; calling
    /// anyone for it only adds load, and its downstream calls would all be
    /// cut short by the deadline. Requests without the header are not
    /// affected.
    pub fn min_budget(mut self, floor: Duration) -> Self {
        self.min_budget = floor;
        self
    }
}

impl<S> Layer<S> for ServerDeadlineLayer {
    type Service = ServerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerDeadline {
            inner,
            own: self.own,
            min_budget: self.min_budget,
        }
    }
}

/// Applies the caller's deadline to a handler. Built by [`ServerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct ServerDeadline<S> {
    inner: S,
    own: Duration,
    min_budget: Duration,
}

impl<S> ServerDeadline<S> {
    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The caller's budget, if it sent a valid one: `1*DIGIT` milliseconds,
/// nothing else (no sign, no spaces, no fraction); a number beyond `u64`
/// saturates, which the server's own timeout then bounds anyway.
fn budget<B>(req: &Request<B>) -> Result<Option<Duration>, &'static str> {
    let Some(value) = req.headers().get(&BUDGET_HEADER) else {
        return Ok(None);
    };
    // The value is not echoed back: it is the caller's text, and a
    // message that quotes it gains nothing the caller does not know.
    value
        .to_str()
        .ok()
        .and_then(crate::retry::digits)
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or("x-request-budget-ms must be a whole number of milliseconds (digits only)")
}

/// A JSON error body, `{"error":code,"message":message}`, every string
/// escaped, so that no text can break the document.
fn json_error<B: From<String>>(status: StatusCode, code: &str, message: &str) -> Response<B> {
    let mut body = String::with_capacity(32 + code.len() + message.len());
    body.push_str("{\"error\":");
    push_json_string(&mut body, code);
    body.push_str(",\"message\":");
    push_json_string(&mut body, message);
    body.push('}');
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Appends `text` as a JSON string (RFC 8259 §7): quotes, backslashes and
/// every control character escaped. The crate has no JSON serializer
/// without the `client` feature, and this is all an error body needs.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerDeadline<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let sent = budget(&req);
        let callers = matches!(sent, Ok(Some(sent)) if sent < self.own);
        let budget = match sent {
            Ok(Some(sent)) if sent < self.min_budget => {
                // Too little time to do anything useful: answering now
                // spares every dependency a call that cannot finish.
                tracing::info!(
                    budget_ms = sent.as_millis() as u64,
                    min_budget_ms = self.min_budget.as_millis() as u64,
                    "caller's budget below the floor, answering 504"
                );
                let message = format!(
                    "the caller's budget of {} ms is below this server's minimum of {} ms",
                    sent.as_millis(),
                    self.min_budget.as_millis()
                );
                let kind = ServerKind::Answered {
                    res: Some(budget_exhausted(&message)),
                };
                return ServerFuture { kind };
            }
            Ok(sent) => sent.map_or(self.own, |sent| sent.min(self.own)),
            Err(message) => {
                let res = json_error(StatusCode::BAD_REQUEST, "invalid_budget_header", message);
                let kind = ServerKind::Answered { res: Some(res) };
                return ServerFuture { kind };
            }
        };
        let deadline = Deadline::after(budget);
        let inner = deadline.sync_scope(|| self.inner.call(req));
        ServerFuture {
            kind: ServerKind::Running {
                inner: deadline.scope(inner),
                sleep: sleep_until(deadline.instant()),
                budget,
                callers,
            },
        }
    }
}

pin_project! {
    /// Response future of [`ServerDeadline`]: the handler, run with the
    /// deadline as the task's current one, or an answer given without it.
    #[derive(Debug)]
    pub struct ServerFuture<F, B> {
        #[pin]
        kind: ServerKind<F, B>,
    }
}

pin_project! {
    #[project = ServerProj]
    #[derive(Debug)]
    enum ServerKind<F, B> {
        Running {
            #[pin]
            inner: Scoped<F>,
            #[pin]
            sleep: Sleep,
            budget: Duration,
            // Whether the budget was the caller's (shorter than our own).
            callers: bool,
        },
        Answered {
            res: Option<Response<B>>,
        },
    }
}

impl<F, B, E> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: From<String>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ServerProj::Running {
                inner,
                sleep,
                budget,
                callers,
            } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result);
                }
                ready!(sleep.poll(cx));
                let message = Elapsed::deadline(*budget).to_string();
                tracing::warn!(
                    budget_ms = budget.as_millis() as u64,
                    "deadline exceeded, answering 504"
                );
                if *callers {
                    return Poll::Ready(Ok(budget_exhausted(&message)));
                }
                Poll::Ready(Ok(json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "deadline_exceeded",
                    &message,
                )))
            }
            ServerProj::Answered { res } => {
                Poll::Ready(Ok(res.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::push_json_string;

    #[test]
    fn every_string_survives_a_json_round_trip() {
        let mut hostile: String = (0u32..0x80).filter_map(char::from_u32).collect();
        hostile.push_str("\"}{\"a\":1 \\ \u{2028}\u{2029} é ✓ \u{10ffff}");
        let mut out = String::new();
        push_json_string(&mut out, &hostile);
        let back: String = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(back, hostile);
        assert!(!out.chars().any(|c| u32::from(c) < 0x20), "{out:?}");
    }
}
