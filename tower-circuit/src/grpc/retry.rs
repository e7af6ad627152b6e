//! Retrying gRPC calls: which methods may be retried ([`GrpcMethods`]) and
//! which answers are worth another attempt ([`GrpcRetryClassifier`]).
//!
//! Every gRPC call is a `POST`, so the retry layer's default rule (by
//! method) would retry none of them, or with
//! [`retry_non_idempotent`](crate::retry::RetryBuilder::retry_non_idempotent)
//! all of them. The table says per method, as the proto's
//! `idempotency_level` (`NO_SIDE_EFFECTS`, `IDEMPOTENT`) would: give it to
//! [`RetryBuilder::idempotency`](crate::retry::RetryBuilder::idempotency),
//! and the same table to [`ReplayLayer`](super::replay::ReplayLayer), which
//! buffers those methods' request bodies so an attempt can be sent again
//! (tonic's body is not `Clone`).
//!
//! # The client stack
//!
//! Outermost first:
//!
//! 1. the status layer (maps our errors to `tonic::Status`);
//! 2. [`DeadlineLayer`](crate::timeout::DeadlineLayer): one budget for the
//!    whole call, retries included;
//! 3. [`ReplayLayer`](super::replay::ReplayLayer): buffers the request body
//!    of a retryable method once, before the first attempt;
//! 4. [`RetryLayer`](crate::retry::RetryLayer) with
//!    [`GrpcRetryClassifier`] and [`GrpcMethods`] as its idempotency rule;
//! 5. the breaker's gRPC layer: sees every attempt;
//! 6. [`RequestTimeoutLayer`](crate::timeout::RequestTimeoutLayer): each
//!    attempt's limit;
//! 7. [`PropagateDeadlineLayer`](crate::timeout::PropagateDeadlineLayer):
//!    `grpc-timeout` and `x-request-budget-ms` on the wire;
//! 8. request id, then signing (the auth crate);
//! 9. the HTTP/2 client (`hyper-util` with `http2_only`).
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_circuit::grpc::replay::ReplayLayer;
//! use tower_circuit::grpc::retry::{GrpcMethods, GrpcRetryClassifier, MethodKind};
//! use tower_circuit::retry::RetryLayer;
//! use tower_circuit::timeout::{DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};
//!
//! let methods = GrpcMethods::new()
//!     .idempotent("/user.UserService/GetUser")
//!     .method("/user.UserService/ListUsers", MethodKind::ServerStreaming, true)
//!     .method("/user.UserService/UpdateUser", MethodKind::Unary, false);
//! let retry = RetryLayer::builder("user-service")
//!     .idempotency(methods.clone())
//!     .build()
//!     .unwrap()
//!     .classifier(GrpcRetryClassifier);
//! let stack = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(5)))
//!     .layer(ReplayLayer::new(methods))
//!     .layer(retry)
//!     .layer(RequestTimeoutLayer::by_method())
//!     .layer(PropagateDeadlineLayer::new());
//! # let _ = stack;
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Request, Response, StatusCode};

use crate::BoxError;
use crate::retry::{Decision, Idempotency, RetryClassifier, RetryReason};

/// The header a gRPC server asks a client to wait with before retrying
/// (gRPC proposal A6): a non-negative number of milliseconds.
pub const PUSHBACK_HEADER: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// `UNAVAILABLE`, the one status retried.
const UNAVAILABLE: u16 = 14;

/// What a method streams, from its definition in the proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    BidiStreaming,
}

impl MethodKind {
    /// Whether the request is a stream: such a call cannot be buffered
    /// and sent again, so it is never retried.
    pub fn streams_request(self) -> bool {
        matches!(
            self,
            MethodKind::ClientStreaming | MethodKind::BidiStreaming
        )
    }
}

/// A table of gRPC methods (`/package.Service/Method`, the request's path)
/// and whether each may be retried: it must be idempotent and its request
/// must not stream. A method not in the table is never retried.
///
/// Cloning shares the table. Used as the retry layer's [`Idempotency`]
/// rule and by [`ReplayLayer`](super::replay::ReplayLayer).
#[derive(Debug, Clone, Default)]
pub struct GrpcMethods {
    table: Arc<HashMap<Box<str>, (MethodKind, bool)>>,
}

impl GrpcMethods {
    /// An empty table: nothing is retried.
    pub fn new() -> Self {
        GrpcMethods::default()
    }

    /// Adds a method: `path` as the request's (`/user.UserService/GetUser`),
    /// its kind, and whether calling it twice has the effect of calling it
    /// once (the proto's `NO_SIDE_EFFECTS` or `IDEMPOTENT`). A path given
    /// twice keeps the last entry.
    pub fn method(mut self, path: &str, kind: MethodKind, idempotent: bool) -> Self {
        Arc::make_mut(&mut self.table).insert(path.into(), (kind, idempotent));
        self
    }

    /// Adds an idempotent unary method: `method(path, Unary, true)`.
    pub fn idempotent(self, path: &str) -> Self {
        self.method(path, MethodKind::Unary, true)
    }

    /// Whether a call to `path` may be retried: listed, idempotent, and
    /// its request does not stream.
    pub fn may_retry(&self, path: &str) -> bool {
        self.table
            .get(path)
            .is_some_and(|&(kind, idempotent)| idempotent && !kind.streams_request())
    }
}

impl Idempotency for GrpcMethods {
    fn is_idempotent<B>(&self, req: &Request<B>) -> bool {
        self.may_retry(req.uri().path())
    }
}

/// What is retried for gRPC calls:
///
/// - `UNAVAILABLE` (14) in the response's *headers* (a trailers-only
///   answer, which is how a server answers before sending any message),
///   not before the server's [`PUSHBACK_HEADER`] when it sends one (a
///   non-negative integer of ms); a negative or malformed pushback means
///   "do not retry", as proposal A6 says. A status in the *trailers* comes
///   after messages were delivered: that call is not retried (and this
///   classifier, which sees only the response head, never sees it);
/// - HTTP `502`, `503` and `504` without a `grpc-status` (a proxy's
///   answer, which gRPC maps to `UNAVAILABLE`);
/// - errors as the default classifier does: an attempt's own timeout
///   ([`Elapsed`](crate::timeout::Elapsed), not a deadline) and transport
///   errors yes; a deadline [`Elapsed`](crate::timeout::Elapsed) and an
///   open circuit never.
///
/// Every other status is returned, `DEADLINE_EXCEEDED` (4) from the
/// server included: the server's deadline, or the caller's, has passed,
/// and another attempt would meet the same.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcRetryClassifier;

impl<B> RetryClassifier<B> for GrpcRetryClassifier {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Decision {
        let res = match result {
            Ok(res) => res,
            Err(e) => return crate::retry::classify_error(e),
        };
        match res.headers().get(&GRPC_STATUS) {
            Some(status) if status.as_bytes() == b"14" => pushback(res.headers()),
            Some(_) => Decision::Done,
            None => match res.status() {
                status @ (StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT) => Decision::Retry {
                    reason: RetryReason::Status(status),
                    not_before: None,
                },
                _ => Decision::Done,
            },
        }
    }
}

/// The verdict on an `UNAVAILABLE`, from its pushback.
fn pushback(headers: &HeaderMap) -> Decision {
    let not_before = match headers.get(&PUSHBACK_HEADER) {
        None => None,
        Some(value) => match value.to_str().ok().and_then(crate::retry::digits) {
            Some(ms) => Some(Duration::from_millis(ms)),
            // The server said not to retry, or said something we cannot
            // read: either way, retrying could be what it asked us not to.
            None => return Decision::Done,
        },
    };
    Decision::Retry {
        reason: RetryReason::GrpcStatus(UNAVAILABLE),
        not_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Response<()> {
        let mut res = Response::builder().status(status).body(()).unwrap();
        for (name, value) in headers {
            res.headers_mut().insert(*name, value.parse().unwrap());
        }
        res
    }

    fn classify(res: &Response<()>) -> Decision {
        GrpcRetryClassifier.classify(Ok(res))
    }

    #[test]
    fn unavailable_in_the_headers_is_retried_and_other_statuses_are_not() {
        assert_eq!(
            classify(&answer(200, &[("grpc-status", "14")])),
            Decision::Retry {
                reason: RetryReason::GrpcStatus(14),
                not_before: None
            }
        );
        for code in ["0", "1", "2", "4", "5", "8", "13", "140", "14 "] {
            let res = answer(200, &[("grpc-status", code)]);
            assert_eq!(classify(&res), Decision::Done, "{code}");
        }
        // No status in the headers: messages follow; not retried here.
        assert_eq!(classify(&answer(200, &[])), Decision::Done);
    }

    #[test]
    fn pushback_is_a_floor_and_a_bad_one_means_no_retry() {
        let res = answer(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")],
        );
        assert_eq!(
            classify(&res),
            Decision::Retry {
                reason: RetryReason::GrpcStatus(14),
                not_before: Some(Duration::from_millis(250))
            }
        );
        for bad in ["-1", "", "1.5", "+5", " 5", "abc"] {
            let res = answer(
                200,
                &[("grpc-status", "14"), ("grpc-retry-pushback-ms", bad)],
            );
            assert_eq!(classify(&res), Decision::Done, "{bad:?}");
        }
    }

    #[test]
    fn proxy_errors_without_a_status_are_retried() {
        for status in [502, 503, 504] {
            assert!(matches!(
                classify(&answer(status, &[])),
                Decision::Retry { .. }
            ));
        }
        for status in [500, 404, 429] {
            assert_eq!(classify(&answer(status, &[])), Decision::Done);
        }
        // With a status, the status decides.
        assert_eq!(
            classify(&answer(503, &[("grpc-status", "4")])),
            Decision::Done
        );
    }

    #[test]
    fn the_table_allows_idempotent_methods_whose_request_does_not_stream() {
        let methods = GrpcMethods::new()
            .idempotent("/p.S/Get")
            .method("/p.S/List", MethodKind::ServerStreaming, true)
            .method("/p.S/Update", MethodKind::Unary, false)
            .method("/p.S/Upload", MethodKind::ClientStreaming, true)
            .method("/p.S/Chat", MethodKind::BidiStreaming, true);
        assert!(methods.may_retry("/p.S/Get"));
        assert!(methods.may_retry("/p.S/List"));
        assert!(!methods.may_retry("/p.S/Update"));
        assert!(!methods.may_retry("/p.S/Upload"));
        assert!(!methods.may_retry("/p.S/Chat"));
        assert!(!methods.may_retry("/p.S/Unknown"));
        assert!(!methods.may_retry("/p.S/get"));
    }
}
