//! Which requests may be sent twice.

use http::{HeaderMap, Method, Request, Uri};

use super::classify::is_idempotent;

/// Decides whether a request may be sent more than once, so the retry
/// layer may retry it. Pluggable: see
/// [`RetryBuilder::idempotency`](super::RetryBuilder::idempotency).
///
/// Any closure over the request's method, URI and headers is one:
///
/// ```
/// use http::{HeaderMap, Method, Uri};
/// use tower_circuit::retry::RetryLayer;
///
/// // Only reads, and only under /users.
/// let retry = RetryLayer::builder("user-service")
///     .idempotency(|method: &Method, uri: &Uri, _headers: &HeaderMap| {
///         method == Method::GET && uri.path().starts_with("/users")
///     })
///     .build()
///     .unwrap();
/// # let _ = retry;
/// ```
pub trait Idempotency {
    /// Whether `req` may be sent again after an attempt failed.
    fn is_idempotent<B>(&self, req: &Request<B>) -> bool;
}

/// The default rule, [`is_idempotent`]: GET, HEAD, OPTIONS, PUT, DELETE
/// and TRACE always, POST and PATCH only with an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultIdempotency;

impl Idempotency for DefaultIdempotency {
    #[inline]
    fn is_idempotent<B>(&self, req: &Request<B>) -> bool {
        is_idempotent(req)
    }
}

impl<F> Idempotency for F
where
    F: Fn(&Method, &Uri, &HeaderMap) -> bool,
{
    fn is_idempotent<B>(&self, req: &Request<B>) -> bool {
        self(req.method(), req.uri(), req.headers())
    }
}
