use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::header::HeaderName;
use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{
    API_KEY_HEADER, ApiKeyIdentity, ApiKeys, Rejection, SERVICE_NAME_HEADER, TokenProblem,
};
use crate::jwt::verify::ServiceIdentity;
use crate::mtls::other_peer;

/// One target for this module's events, whichever file logs them.
const TARGET: &str = "tower_jwt_service_auth::api_key";

/// Requires a valid API key on every request (see the
/// [module docs](super)), and counts what it refused in [`ApiKeyStats`].
///
/// The service's error type is the inner one, and a refusal is a response
/// rather than an error, so it fits axum's infallible services.
///
/// # Permissions: the receiver decides
///
/// A key says who the caller is, not what it may do. With
/// [`grant`](ApiKeyLayer::grant), this layer also gives each caller the
/// permissions this service grants it, as the
/// [`ServiceIdentity`] that [`RequirePermissionLayer`] and handlers read
/// (`token_id` empty, `expires_at` the time of the check): the same
/// routes work behind this layer as behind
/// [`VerifyLayer`](crate::jwt::VerifyLayer). A caller with a valid key
/// and no grant holds no permission, so every route that requires one
/// answers it `403`. Nothing the caller sends can widen its grant.
///
/// ```
/// use std::convert::Infallible;
///
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_jwt_service_auth::api_key::{ApiKeyClientLayer, ApiKeyLayer, ApiKeys};
/// use tower_jwt_service_auth::jwt::RequirePermissionLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let keys = ApiKeys::new().with_key("order-service", "v1", "k7Hq2-random-secret");
/// let users = ServiceBuilder::new()
///     .layer(ApiKeyLayer::new(keys).grant("order-service", ["read:users"]))
///     .layer(RequirePermissionLayer::new("read:users"))
///     .service(service_fn(|_: Request<String>| async {
///         Ok::<_, Infallible>(Response::new(String::new()))
///     }));
/// let order_service = ApiKeyClientLayer::new("order-service", "k7Hq2-random-secret").unwrap();
/// let res = order_service.layer(users).oneshot(Request::new(String::new())).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// # }
/// # use tower::Layer;
/// ```
///
/// # Identity binding
///
/// Over mutual TLS (the request carries a
/// [`PeerIdentity`](crate::mtls::PeerIdentity)), [`SERVICE_NAME_HEADER`]
/// must name the service of the client certificate: a valid key of
/// another service is refused `401` with `{"error": "peer_mismatch"}`,
/// counted as [`Rejection::PeerMismatch`] and logged. A key is a bearer
/// secret; bound to the certificate, one taken from a service cannot be
/// used over any other service's connection. On by default;
/// [`without_peer_binding`](ApiKeyLayer::without_peer_binding) is for a
/// proxy that terminates its callers' mutual TLS and forwards their keys
/// over its own.
///
/// [`RequirePermissionLayer`]: crate::jwt::RequirePermissionLayer
#[derive(Debug, Clone)]
pub struct ApiKeyLayer {
    keys: Arc<ApiKeys>,
    stats: ApiKeyStats,
    grants: Option<Arc<Grants>>,
    peer_binding: bool,
}

/// Each caller's permissions here, by service name.
type Grants = BTreeMap<String, Vec<String>>;

impl ApiKeyLayer {
    /// Accepts the keys in `keys`.
    pub fn new(keys: ApiKeys) -> Self {
        ApiKeyLayer {
            keys: Arc::new(keys),
            stats: ApiKeyStats::default(),
            grants: None,
            peer_binding: true,
        }
    }

    /// Grants `service` these permissions (added to any granted before),
    /// and from then on gives every caller a [`ServiceIdentity`] with its
    /// grant; see [permissions](ApiKeyLayer#permissions-the-receiver-decides).
    pub fn grant<I, S>(mut self, service: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let grants = Arc::make_mut(self.grants.get_or_insert_with(Default::default));
        let granted = grants.entry(service.into()).or_default();
        for permission in permissions {
            let permission = permission.into();
            if !granted.contains(&permission) {
                granted.push(permission);
            }
        }
        self
    }

    /// Accepts a key over a mutual TLS connection whatever service the
    /// client certificate names: only behind a proxy that re-originates
    /// TLS (see [identity binding](ApiKeyLayer#identity-binding)).
    pub fn without_peer_binding(mut self) -> Self {
        self.peer_binding = false;
        self
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
            grants: self.grants.clone(),
            peer_binding: self.peer_binding,
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
    grants: Option<Arc<Grants>>,
    peer_binding: bool,
}

impl<S> ApiKey<S> {
    /// Guards `inner` with `keys`, counting into fresh [`ApiKeyStats`];
    /// the same as `ApiKeyLayer::new(keys).layer(inner)`.
    pub fn new(inner: S, keys: ApiKeys) -> Self {
        ApiKeyLayer::new(keys).layer(inner)
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
        let (claimed, mut result) = authenticate(&self.keys, req.headers());
        // After the key check, so this refusal means a valid key came over
        // another service's connection: worth a warning of its own.
        if let Ok(identity) = &result
            && self.peer_binding
            && let Some(peer) = other_peer(req.extensions(), &identity.service)
        {
            tracing::warn!(
                target: TARGET,
                service = %identity.service,
                // The SPIFFE grammar has nothing to escape.
                peer = %peer,
                "a valid API key came over another service's connection"
            );
            result = Err(Rejection::PeerMismatch);
        }
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
        if let Some(grants) = &self.grants {
            let permissions = grants.get(&identity.service).cloned().unwrap_or_default();
            req.extensions_mut().insert(ServiceIdentity {
                service: identity.service.clone(),
                permissions,
                token_id: None,
                expires_at: SystemTime::now(),
            });
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
