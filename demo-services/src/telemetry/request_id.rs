//! Request ids: `X-Request-ID` accepted from the caller or made at the
//! edge, echoed in the response, recorded in the request's log span (so
//! every log line of the request carries it, the breaker's and the retry
//! layer's included), and sent on every outbound call the request causes.
//!
//! The set and echo steps are tower-http's `SetRequestIdLayer` and
//! `PropagateRequestIdLayer`; the outbound step needs the id of the request
//! being handled where the client builds its request, so [`scope`] keeps it
//! in a task-local for the handler's duration and [`outbound_layer`] reads
//! it from there.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::request_id::{MakeRequestId, RequestId};

/// `x-request-id`.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id accepted from a caller; a longer one is replaced.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: HeaderValue;
}

/// Makes ids for requests that arrive without one: 16 random bytes in hex.
#[derive(Debug, Clone, Copy, Default)]
pub struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &http::Request<B>) -> Option<RequestId> {
        Some(RequestId::new(new_id()))
    }
}

/// A fresh id.
pub fn new_id() -> HeaderValue {
    use rand::RngExt;
    let bits: u128 = rand::rng().random();
    // Hex digits are always a valid header value.
    HeaderValue::try_from(format!("{bits:032x}")).unwrap_or(HeaderValue::from_static("0"))
}

/// Middleware: drops a caller's id that is empty or too long (so it is
/// made afresh by the next layer).
pub async fn sanitize(mut req: Request, next: Next) -> Response {
    let bad = req
        .headers()
        .get(&HEADER)
        .is_some_and(|v| v.is_empty() || v.len() > MAX_LEN);
    if bad {
        req.headers_mut().remove(&HEADER);
    }
    next.run(req).await
}

/// Middleware: makes the request's id current while it is handled.
pub async fn scope(req: Request, next: Next) -> Response {
    match req.headers().get(&HEADER).cloned() {
        Some(id) => CURRENT.scope(id, next.run(req)).await,
        None => next.run(req).await,
    }
}

/// The id of the request being handled, if any.
pub fn current() -> Option<HeaderValue> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with `id` current, for work that is not a request (the outbox).
pub async fn with_id<F: Future>(id: HeaderValue, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

/// A client layer that puts the current request's id on outbound requests.
pub fn outbound_layer<B>() -> tower::util::MapRequestLayer<fn(http::Request<B>) -> http::Request<B>>
{
    tower::util::MapRequestLayer::new(attach::<B>)
}

fn attach<B>(mut req: http::Request<B>) -> http::Request<B> {
    if let Some(id) = current() {
        req.headers_mut().insert(HEADER, id);
    }
    req
}
