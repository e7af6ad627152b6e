//! Request ids: `X-Request-ID` accepted from the caller or made at the
//! edge, echoed in the response, recorded in the request's log span (so
//! every log line of the request carries it, the breaker's and the retry
//! layer's included), and sent on every outbound call the request causes.
//!
//! The set and echo steps are tower-http's `SetRequestIdLayer` and
//! `PropagateRequestIdLayer`; the outbound step needs the id of the request
//! being handled where the client builds its request, so [`ScopeLayer`] keeps it
//! in a task-local for the handler's duration and [`outbound_layer`] reads
//! it from there.

use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use tokio::task::futures::TaskLocalFuture;
use tower::util::MapRequestLayer;
use tower::{Layer, Service};
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

/// Drops a caller's id that is empty, longer than [`MAX_LEN`] or not made
/// of visible ASCII only (no spaces, tabs or other bytes), so the next
/// layer makes one afresh. The id goes into every log line of the request
/// and onto every call it causes: it must be plain text.
pub fn sanitize_layer() -> MapRequestLayer<fn(Request) -> Request> {
    MapRequestLayer::new(sanitize)
}

fn sanitize(mut req: Request) -> Request {
    let bad = req.headers().get(&HEADER).is_some_and(|v| !acceptable(v));
    if bad {
        req.headers_mut().remove(&HEADER);
    }
    req
}

/// Whether a caller's id is kept: 1 to [`MAX_LEN`] visible ASCII bytes.
fn acceptable(id: &HeaderValue) -> bool {
    (1..=MAX_LEN).contains(&id.len()) && id.as_bytes().iter().all(u8::is_ascii_graphic)
}

/// Makes the request's id current while it is handled, for
/// [`outbound_layer`]. A plain tower layer (no boxing): this runs on every
/// request.
#[derive(Debug, Clone, Copy, Default)]
pub struct ScopeLayer;

impl<S> Layer<S> for ScopeLayer {
    type Service = Scope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Scope { inner }
    }
}

/// The service of [`ScopeLayer`].
#[derive(Debug, Clone)]
pub struct Scope<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Scope<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TaskLocalFuture<HeaderValue, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // An empty id when there is none (the set layer runs first, so
        // only a misordered stack gets here without one); `current`
        // reports an empty id as none.
        let id = req
            .headers()
            .get(&HEADER)
            .cloned()
            .unwrap_or(HeaderValue::from_static(""));
        let future = self.inner.call(req);
        CURRENT.scope(id, future)
    }
}

/// The id of the request being handled, if any.
pub fn current() -> Option<HeaderValue> {
    CURRENT
        .try_with(Clone::clone)
        .ok()
        .filter(|id| !id.is_empty())
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
