//! gRPC callers get gRPC answers from every layer of the stack.
//!
//! The layers and routes of the stack refuse in HTTP: a JSON 404 for an
//! unknown path, 413 over the body limit, 503 from fault injection, 500
//! from a panic, 504 when the deadline passes. A gRPC client reads none of
//! that: it wants HTTP 200, `content-type: application/grpc` and a
//! `grpc-status`, and reports anything else as a protocol error, so the
//! caller's breaker and retries cannot tell "no such method" from "the
//! server is down". [`GrpcErrors`], outermost in the stack, turns each
//! such answer to a gRPC request into a trailers-only gRPC answer (status
//! and message in the headers, empty body), by the table in
//! [`grpc_code`]. Answers that already are gRPC pass untouched, body
//! streaming as it was, and requests that are not gRPC are never touched.
//!
//! ```
//! use axum::Router;
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use demo_services::server::grpc_errors::GrpcErrorsLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = Router::new().layer(GrpcErrorsLayer::new());
//! let call = Request::post("/user.UserService/GetUser")
//!     .header("content-type", "application/grpc")
//!     .body(Body::empty())
//!     .unwrap();
//! let res = app.oneshot(call).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["grpc-status"], "12"); // UNIMPLEMENTED, not 404
//! # }
//! ```
//!
//! The message is the JSON body's `message` (this service's own bodies:
//! read only when the body says it holds at most [`MAX_BODY_READ`] bytes),
//! or the HTTP status's name. The answer keeps the other headers
//! (`x-request-id`, and `x-request-budget-ms: 0` on a 504, which tells the
//! caller its own budget ended the call); a `Retry-After: N` on a 503 or
//! 429 becomes `grpc-retry-pushback-ms: N*1000`, the gRPC spelling that
//! gRPC clients' retry policies obey.
//!
//! Metrics and traces sit inside this layer, so they record the HTTP
//! status the stack decided (503 for an injected fault), not the 200 the
//! gRPC caller receives: a refused call is never counted as a success.

mod future;
mod layer;

use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, TRANSFER_ENCODING};
use axum::http::{HeaderValue, Request, Response, StatusCode};
use bytes::Bytes;
use tower::{BoxError, Service};
use tower_circuit::grpc::{encode_message, is_grpc};

pub use self::future::ResponseFuture;
pub use self::layer::GrpcErrorsLayer;

/// The most bytes of a refusal's body read for its message; a larger or
/// unsized body is not read, and the status's name is the message.
pub const MAX_BODY_READ: usize = 4 * 1024;

/// The most bytes of message sent in `grpc-message` (before
/// percent-encoding, which may triple it): a header, not a body.
pub const MAX_MESSAGE: usize = 1024;

/// Answers gRPC requests' HTTP-shaped answers in gRPC; see the
/// [module docs](self). Built by [`GrpcErrorsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcErrors<S> {
    inner: S,
}

impl<S> GrpcErrors<S> {
    /// Translates the answers of `inner`.
    pub fn new(inner: S) -> Self {
        GrpcErrors { inner }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for GrpcErrors<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: http_body::Body<Data = Bytes> + Send + 'static,
    ResB::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        ResponseFuture::new(self.inner.call(req), grpc)
    }
}

/// The gRPC status for an HTTP answer to a gRPC request.
///
/// | HTTP | gRPC |
/// |---|---|
/// | 400 | 3 `INVALID_ARGUMENT` |
/// | 401 | 16 `UNAUTHENTICATED` |
/// | 403 | 7 `PERMISSION_DENIED` |
/// | 404, 405, 501 | 12 `UNIMPLEMENTED` |
/// | 413 | 8 `RESOURCE_EXHAUSTED` |
/// | 429, 502, 503 | 14 `UNAVAILABLE` |
/// | 500 | 13 `INTERNAL` |
/// | 504 | 4 `DEADLINE_EXCEEDED` |
/// | anything else, 2xx included | 2 `UNKNOWN` |
///
/// 400 is `INVALID_ARGUMENT`, not the `INTERNAL` of gRPC's table for
/// proxies: here a 400 is this service refusing the caller's input (a bad
/// id, a bad budget header), and callers' breakers and retries treat
/// `INTERNAL` as the server's fault. A 2xx that is not gRPC is `UNKNOWN`:
/// a REST route answered, so something may have happened, and the caller
/// cannot read what.
pub fn grpc_code(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 => 3,
        401 => 16,
        403 => 7,
        404 | 405 | 501 => 12,
        413 => 8,
        429 | 502 | 503 => 14,
        500 => 13,
        504 => 4,
        _ => 2,
    }
}

/// Makes `head` (an HTTP answer's) a trailers-only gRPC answer with
/// `code` and `message`.
fn trailers_only(
    mut head: axum::http::response::Parts,
    code: u16,
    message: &str,
) -> Response<Body> {
    let status = head.status;
    head.status = StatusCode::OK;
    let headers = &mut head.headers;
    // The body is gone: its length and type with it.
    headers.remove(CONTENT_LENGTH);
    headers.remove(TRANSFER_ENCODING);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code));
    // Percent-encoded text is visible ASCII: always a valid header value.
    if let Ok(value) = HeaderValue::try_from(encode_message(cut(message, MAX_MESSAGE))) {
        headers.insert("grpc-message", value);
    }
    if let Some(seconds) = headers.remove(RETRY_AFTER).and_then(|v| delay_seconds(&v))
        && matches!(status.as_u16(), 429 | 503)
    {
        headers.insert(
            "grpc-retry-pushback-ms",
            HeaderValue::from(seconds.saturating_mul(1000)),
        );
    }
    Response::from_parts(head, Body::empty())
}

/// `Retry-After` as whole seconds; its HTTP-date form is not used here.
fn delay_seconds(value: &HeaderValue) -> Option<u64> {
    let text = value.to_str().ok()?;
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The message a refusal carries: its JSON body's `message`, or the
/// status's name when the body is not such JSON.
fn message_of(status: StatusCode, body: Option<&[u8]>) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        message: String,
    }
    body.and_then(|bytes| serde_json::from_slice::<ErrorBody>(bytes).ok())
        .map(|body| body.message)
        .unwrap_or_else(|| {
            format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned()
        })
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_grpc_codes() {
        for (http, grpc) in [
            (400, 3),
            (401, 16),
            (403, 7),
            (404, 12),
            (405, 12),
            (413, 8),
            (429, 14),
            (500, 13),
            (501, 12),
            (502, 14),
            (503, 14),
            (504, 4),
            (200, 2),
            (302, 2),
            (409, 2),
        ] {
            assert_eq!(
                grpc_code(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn messages_come_from_json_bodies_or_the_status() {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let json = br#"{"error":"injected_fault","message":"down on purpose"}"#;
        assert_eq!(message_of(status, Some(json)), "down on purpose");
        assert_eq!(
            message_of(status, Some(b"not json")),
            "HTTP 503 Service Unavailable"
        );
        assert_eq!(message_of(status, None), "HTTP 503 Service Unavailable");
        assert_eq!(
            message_of(StatusCode::from_u16(599).unwrap(), None),
            "HTTP 599"
        );
    }

    #[test]
    fn messages_are_cut_at_a_character() {
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(cut("abc", 5), "abc");
    }

    #[test]
    fn retry_after_becomes_pushback_on_503_only() {
        let head = |status: u16| {
            let mut res = Response::new(());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("3"));
            res.headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from_static("42"));
            res.into_parts().0
        };
        let res = trailers_only(head(503), 14, "down");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-retry-pushback-ms"], "3000");
        assert!(!res.headers().contains_key(RETRY_AFTER));
        assert!(!res.headers().contains_key(CONTENT_LENGTH));
        let res = trailers_only(head(500), 13, "panic");
        assert!(!res.headers().contains_key("grpc-retry-pushback-ms"));
    }
}
