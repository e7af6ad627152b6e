use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use http::header::HeaderName;
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{
    API_KEY_HEADER, ApiKeyIdentity, ApiKeys, Rejection, SERVICE_NAME_HEADER, TokenProblem,
};

/// One target for this module's events, whichever file logs them.
const TARGET: &str = "tower_jwt_service_auth::api_key";

/// Requires a valid API key on every request (see the
/// [module docs](super)), and counts what it refused in [`ApiKeyStats`].
///
/// The service's error type is the inner one, and a refusal is a response
/// rather than an error, so it fits axum's infallible services.
#[derive(Debug, Clone)]
pub struct ApiKeyLayer {
    keys: Arc<ApiKeys>,
    stats: ApiKeyStats,
}

impl ApiKeyLayer {
    /// Accepts the keys in `keys`.
    pub fn new(keys: ApiKeys) -> Self {
        ApiKeyLayer {
            keys: Arc::new(keys),
            stats: ApiKeyStats::default(),
        }
    }

    /// The keys accepted.
    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// The counters shared by every service this layer builds; keep a
    /// clone to read them after the layer is moved into a stack.
    pub fn stats(&self) -> ApiKeyStats {
        self.stats.clone()
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKey {
            inner,
            keys: Arc::clone(&self.keys),
            stats: self.stats.clone(),
        }
    }
}

/// Calls the inner service only with a valid API key, with the caller's
/// [`ApiKeyIdentity`] in the request's extensions; answers `401`
/// otherwise, or to a gRPC call (`content-type: application/grpc...`,
/// the key and name in its metadata) HTTP 200 with `grpc-status: 16`
/// (`UNAUTHENTICATED`), the same message in `grpc-message` and no body.
/// Built by [`ApiKeyLayer`].
#[derive(Debug, Clone)]
pub struct ApiKey<S> {
    inner: S,
    keys: Arc<ApiKeys>,
    stats: ApiKeyStats,
}

impl<S> ApiKey<S> {
    /// Guards `inner` with `keys`, counting into fresh [`ApiKeyStats`].
    pub fn new(inner: S, keys: ApiKeys) -> Self {
        ApiKey {
            inner,
            keys: Arc::new(keys),
            stats: ApiKeyStats::default(),
        }
    }

    /// This service's counters.
    pub fn stats(&self) -> ApiKeyStats {
        self.stats.clone()
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

/// The one value of header `name`, or why there is not one; `missing` is
/// the rejection for an absent or empty header.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    missing: Rejection,
) -> Result<&'a str, Rejection> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(missing)?;
    if values.next().is_some() {
        return Err(Rejection::SeveralHeaders);
    }
    match TokenProblem::of(value.as_bytes()) {
        Some(TokenProblem::Empty) => Err(missing),
        Some(TokenProblem::TooLong) => Err(Rejection::TooLarge),
        Some(TokenProblem::NotVisibleAscii) => Err(Rejection::Malformed),
        None => value.to_str().map_err(|_| Rejection::Malformed),
    }
}

/// The caller's identity, and the service it claims to be when it named
/// one validly (for the logs, also when the key is refused).
fn authenticate<'a>(
    keys: &ApiKeys,
    headers: &'a HeaderMap,
) -> (Option<&'a str>, Result<ApiKeyIdentity, Rejection>) {
    let service = single(headers, &SERVICE_NAME_HEADER, Rejection::MissingServiceName);
    // The key's problems first: "send a key" is the most useful answer.
    let result = single(headers, &API_KEY_HEADER, Rejection::MissingKey)
        .and_then(|key| keys.verify(service?, key.as_bytes()));
    (service.ok(), result)
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ApiKey<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<String>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        let (claimed, result) = authenticate(&self.keys, req.headers());
        let identity = match result {
            Ok(identity) => identity,
            Err(rejection) => {
                self.stats.count_rejection(rejection);
                // The claimed name, never the key: it may be a real key
                // sent to the wrong service.
                tracing::info!(
                    target: TARGET,
                    reason = rejection.reason(),
                    service = claimed,
                    "API key rejected"
                );
                return ResponseFuture::answered(rejection.respond_to(req.headers()));
            }
        };
        self.stats.counters.accepted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: TARGET,
            service = %identity.service,
            key_version = %identity.key_version,
            "API key accepted"
        );
        // The handler has no use for the key; marked sensitive, it stays
        // out of any request logging further in.
        if let Some(key) = req.headers_mut().get_mut(API_KEY_HEADER) {
            key.set_sensitive(true);
        }
        req.extensions_mut().insert(identity);
        ResponseFuture::called(self.inner.call(req))
    }
}

// === impl ApiKeyStats ===

/// Counts of accepted and refused requests, by [`Rejection`], shared by
/// every clone (atomics in an `Arc`). Read from [`ApiKeyLayer::stats`].
///
/// ```
/// use tower_jwt_service_auth::api_key::{ApiKeyLayer, ApiKeys, Rejection};
///
/// let layer = ApiKeyLayer::new(ApiKeys::new());
/// let stats = layer.stats();
/// for reason in Rejection::ALL {
///     println!("api_key_rejections{{reason=\"{}\"}} {}", reason.reason(), stats.rejected(*reason));
/// }
/// assert_eq!(stats.rejected_total(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ApiKeyStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    /// Indexed by `Rejection as usize`.
    rejected: [AtomicU64; Rejection::ALL.len()],
}

// `Rejection as usize` indexes `rejected` only if `ALL` lists the variants
// in declaration order.
const _: () = {
    let mut i = 0;
    while i < Rejection::ALL.len() {
        assert!(Rejection::ALL[i] as usize == i);
        i += 1;
    }
};

impl ApiKeyStats {
    /// Requests let through.
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::Relaxed)
    }

    /// Requests refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.counters.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// Requests refused for any reason.
    pub fn rejected_total(&self) -> u64 {
        Rejection::ALL.iter().map(|r| self.rejected(*r)).sum()
    }

    fn count_rejection(&self, reason: Rejection) {
        self.counters.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}
