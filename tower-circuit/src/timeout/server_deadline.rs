//! The server side of deadline propagation: [`ServerDeadline`] reads the
//! caller's [`BUDGET_HEADER`] (and a gRPC call's `grpc-timeout`) and bounds
//! the handler by it (see `propagate.rs` for the client side and the
//! protocol).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep_until};
use tower_layer::Layer;
use tower_service::Service;

use super::body::{DEADLINE_EXCEEDED, DeadlineBody, put_grpc_status};
use super::deadline::{Deadline, Scoped};
use super::error::Elapsed;
use super::grpc_timeout::{GRPC_TIMEOUT_HEADER, parse_grpc_timeout};
use super::propagate::BUDGET_HEADER;
use crate::grpc::is_grpc;

/// A `504` that says the caller's budget, not the server, ran out.
fn budget_exhausted<B>(message: &str) -> Response<DeadlineBody<B>> {
    let mut res = json_error(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", message);
    res.headers_mut()
        .insert(BUDGET_HEADER, HeaderValue::from_static("0"));
    res
}

/// Bounds each request a server handles by the smaller of its own timeout
/// and the budget the caller sent, and makes that deadline the one every
/// outbound call of the handler inherits.
///
/// The caller's budget is its [`BUDGET_HEADER`] and, for a gRPC call
/// (`content-type: application/grpc`, `+codec` or `;params` allowed; not
/// gRPC-Web), its [`grpc-timeout`](super::GRPC_TIMEOUT_HEADER): the
/// smallest of the three wins.
///
/// # REST answers
///
/// When the budget runs out, answers `504 Gateway Timeout` with a JSON body
/// `{"error":"deadline_exceeded","message":...}`; when it was the caller's
/// budget that ran out (not this server's own timeout), the answer also
/// carries `x-request-budget-ms: 0`, which tells a [`PropagateDeadline`](super::PropagateDeadline)
/// client that its deadline, not this server's health, ended the call; a [`BUDGET_HEADER`] that
/// is not a whole number of milliseconds gets `400 Bad Request` with
/// `{"error":"invalid_budget_header",...}` and the handler is not called.
/// The header must be `1*DIGIT` (no sign, spaces or fraction); the body
/// never echoes the value sent. With [`min_budget`](Self::min_budget), a
/// budget below the floor is answered `504` at once (same JSON body,
/// `"deadline_exceeded"`) without calling the handler. Once the handler
/// has answered, its body is passed on as it is: the deadline bounds the
/// handler's work, not how fast the client reads.
///
/// # gRPC answers
///
/// A gRPC client understands no JSON and no `504`: every answer the layer
/// makes itself is a trailers-only gRPC answer, HTTP `200`,
/// `content-type: application/grpc`, `grpc-status` and a percent-encoded
/// `grpc-message` in the headers, no body:
///
/// - deadline passed before the handler answered, or budget below
///   [`min_budget`](Self::min_budget): `DEADLINE_EXCEEDED` (4), with
///   `x-request-budget-ms: 0` when the budget was the caller's;
/// - a malformed `x-request-budget-ms` or `grpc-timeout`:
///   `INVALID_ARGUMENT` (3), the handler not called. grpc-go answers a
///   malformed `grpc-timeout` with `INTERNAL`; a caller-side code is
///   chosen here because the caller's bug is not this server's failure,
///   and a client's circuit breaker counts `INTERNAL` against the server.
///
/// The deadline also covers the whole response stream: when it passes
/// after the handler answered, the body ends with `DEADLINE_EXCEEDED`
/// trailers and the handler's stream is dropped (see [`DeadlineBody`]).
/// This server answers so itself, even if the client never cancels.
///
/// The service's error type is the inner one, so it fits axum's infallible
/// services; the response body is a [`DeadlineBody`] around the inner one.
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
fn json_error<B>(status: StatusCode, code: &str, message: &str) -> Response<DeadlineBody<B>> {
    let mut body = String::with_capacity(32 + code.len() + message.len());
    body.push_str("{\"error\":");
    push_json_string(&mut body, code);
    body.push_str(",\"message\":");
    push_json_string(&mut body, message);
    body.push('}');
    let mut res = Response::new(DeadlineBody::full(Some(Bytes::from(body))));
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

/// What a request sent: the smaller of its `x-request-budget-ms` and, for
/// a gRPC call, its `grpc-timeout`; or the message for a malformed one.
fn callers_budget<B>(req: &Request<B>, grpc: bool) -> Result<Option<Duration>, &'static str> {
    let sent = budget(req)?;
    if !grpc {
        return Ok(sent);
    }
    let Some(value) = req.headers().get(&GRPC_TIMEOUT_HEADER) else {
        return Ok(sent);
    };
    let timeout = value
        .to_str()
        .ok()
        .and_then(|text| parse_grpc_timeout(text).ok())
        .ok_or("grpc-timeout must be 1 to 8 digits followed by one of H, M, S, m, u, n")?;
    Ok(Some(sent.map_or(timeout, |sent| sent.min(timeout))))
}

/// A gRPC trailers-only answer: HTTP 200, `content-type:
/// application/grpc`, the status in the headers and no body.
fn grpc_answer<B>(code: HeaderValue, message: &str, callers: bool) -> Response<DeadlineBody<B>> {
    let mut res = Response::new(DeadlineBody::full(None));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    put_grpc_status(headers, code, message, callers);
    res
}

/// `INVALID_ARGUMENT`.
const INVALID_ARGUMENT: HeaderValue = HeaderValue::from_static("3");

impl<S, ReqB, ResB> Service<Request<ReqB>> for ServerDeadline<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<DeadlineBody<ResB>>;
    type Error = S::Error;
    type Future = ServerFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let sent = callers_budget(&req, grpc);
        let callers = matches!(sent, Ok(Some(sent)) if sent < self.own);
        let budget = match sent {
            Ok(Some(sent)) if sent < self.min_budget => {
                // Too little time to do anything useful: answering now
                // spares every dependency a call that cannot finish.
                tracing::info!(
                    budget_ms = sent.as_millis() as u64,
                    min_budget_ms = self.min_budget.as_millis() as u64,
                    grpc,
                    "caller's budget below the floor, answering DEADLINE_EXCEEDED"
                );
                let message = format!(
                    "the caller's budget of {} ms is below this server's minimum of {} ms",
                    sent.as_millis(),
                    self.min_budget.as_millis()
                );
                let res = if grpc {
                    grpc_answer(DEADLINE_EXCEEDED, &message, true)
                } else {
                    budget_exhausted(&message)
                };
                let kind = ServerKind::Answered { res: Some(res) };
                return ServerFuture { kind };
            }
            Ok(sent) => sent.map_or(self.own, |sent| sent.min(self.own)),
            Err(message) => {
                let res = if grpc {
                    grpc_answer(INVALID_ARGUMENT, message, false)
                } else {
                    json_error(StatusCode::BAD_REQUEST, "invalid_budget_header", message)
                };
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
                grpc,
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
            grpc: bool,
        },
        Answered {
            res: Option<Response<DeadlineBody<B>>>,
        },
    }
}

impl<F, B, E> Future for ServerFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<DeadlineBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            ServerProj::Running {
                inner,
                sleep,
                budget,
                callers,
                grpc,
            } => {
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map(|res| {
                        if *grpc {
                            // The stream that follows stays under the
                            // same deadline.
                            let deadline = sleep.deadline();
                            res.map(|body| DeadlineBody::bounded(body, deadline, *budget, *callers))
                        } else {
                            res.map(DeadlineBody::inner)
                        }
                    }));
                }
                ready!(sleep.poll(cx));
                let message = Elapsed::deadline(*budget).to_string();
                tracing::warn!(
                    budget_ms = budget.as_millis() as u64,
                    grpc = *grpc,
                    "deadline exceeded, answering DEADLINE_EXCEEDED"
                );
                if *grpc {
                    return Poll::Ready(Ok(grpc_answer(DEADLINE_EXCEEDED, &message, *callers)));
                }
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
