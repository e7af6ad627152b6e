//! Verifying service tokens on a server: [`VerifyLayer`] for every route,
//! [`RequirePermissionLayer`] per route.
//!
//! Refused requests never reach the inner service. They are answered per
//! RFC 6750: `401` with `WWW-Authenticate: Bearer` for a missing token,
//! `401` with `Bearer error="invalid_token"` for any token that does not
//! prove who the caller is, `403` with `Bearer error="insufficient_scope"`
//! for a known caller without the right; each with a JSON body
//! `{"error": ..., "message": ...}`. A gRPC call (`content-type:
//! application/grpc...`, the token in its `authorization` metadata) is
//! refused as gRPC servers refuse calls: HTTP 200 with `grpc-status` 16
//! (`UNAUTHENTICATED`) where HTTP says 401, 7 (`PERMISSION_DENIED`) where
//! it says 403, the same message in `grpc-message`, and no body. The
//! services keep their inner error type, so they fit axum's infallible
//! services.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
//! use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
//! use tower_jwt_service_auth::jwt::sign::Signer;
//! use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let secret = [9u8; 32];
//! let verifier = Verifier::new("user-service", KeySet::new().with(VerifyingKey::hs256("k1", &secret).unwrap()));
//! let users = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(verifier))
//!     .layer(RequirePermissionLayer::new("read:users"))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let caller = req.extensions().get::<ServiceIdentity>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello, {}", caller.service)))
//!     }));
//!
//! let signer = Signer::new("order-service", SigningKey::hs256("k1", &secret).unwrap()).permissions(["read:users"]);
//! let token = signer.sign("user-service").unwrap().token;
//! let req = Request::get("/users/7").header("authorization", format!("Bearer {token}")).body(String::new()).unwrap();
//! let res = users.clone().oneshot(req).await.unwrap();
//! assert_eq!(res.into_body(), "hello, order-service");
//!
//! let anonymous = Request::get("/users/7").body(String::new()).unwrap();
//! assert_eq!(users.oneshot(anonymous).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! With the `axum` feature, [`ServiceIdentity`] is an axum extractor:
//! handlers take `caller: ServiceIdentity` as an argument. On a route
//! without [`VerifyLayer`] it answers `500` (see `MissingVerifyLayer`).

mod cache;
#[cfg(feature = "axum")]
mod extract;
/// The response future, shared with the API-key layer: the inner call, or
/// a refusal.
pub mod future {
    pub use crate::future::ResponseFuture;
}
mod permission;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::header::AUTHORIZATION;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "axum")]
pub use self::extract::MissingVerifyLayer;
pub use self::permission::{RequirePermission, RequirePermissionLayer};

use self::cache::{Entry, TokenCache};
use crate::escape::Escaped;
use crate::future::ResponseFuture;
use crate::jwt::verify::{Rejection, ServiceIdentity, Verifier};
use crate::mtls::other_peer;

/// How many verified tokens are remembered by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Counts since the layer was built, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStats {
    /// Requests let through.
    pub verified: u64,
    /// Of those, how many were served from the verified-token cache.
    pub cache_hits: u64,
    /// Of those, how many claimed permissions the issuer is not granted
    /// (and were let through without them): see
    /// [`Verifier::grant`](crate::jwt::verify::Verifier::grant).
    pub permissions_trimmed: u64,
    /// Refusals by [`Rejection::reason`], sorted by reason.
    pub rejected: Vec<(&'static str, u64)>,
}

struct Shared {
    verifier: Verifier,
    cache: TokenCache,
    verified: AtomicU64,
    cache_hits: AtomicU64,
    permissions_trimmed: AtomicU64,
    rejected: Mutex<HashMap<&'static str, u64>>,
}

impl Shared {
    fn authenticate<B>(&self, req: &Request<B>) -> Result<ServiceIdentity, Rejection> {
        let mut values = req.headers().get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(Rejection::Missing)?;
        if values.next().is_some() {
            return Err(Rejection::SeveralHeaders);
        }
        let value = value
            .to_str()
            .map_err(|_| Rejection::Malformed("the Authorization header is not ASCII"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => {
                return Err(Rejection::Malformed(
                    "expected `Authorization: Bearer <token>`",
                ));
            }
        };
        if token.is_empty() {
            return Err(Rejection::Malformed("the bearer token is empty"));
        }
        // One clock for the cache and the verifier, so both agree on when
        // a token stops being accepted.
        let now = self.verifier.now();
        let leeway = self.verifier.leeway_duration();
        if let Some(entry) = self.cache.get(token, now, leeway) {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            if entry.trimmed {
                self.permissions_trimmed.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(entry.identity);
        }
        let verified = self.verifier.verify_trimming(token, now)?;
        let entry = Entry {
            identity: verified.identity,
            trimmed: !verified.trimmed.is_empty(),
        };
        if entry.trimmed {
            self.permissions_trimmed.fetch_add(1, Ordering::Relaxed);
            // Once per token, not per request: the cache serves the rest.
            tracing::warn!(
                target: "tower_jwt_service_auth::jwt::server",
                audience = self.verifier.audience(),
                caller = %Escaped(&entry.identity.service),
                trimmed = %Escaped(&verified.trimmed.join(",")),
                "service token claims permissions its caller is not granted; they were taken out"
            );
        }
        self.cache.insert(token, &entry);
        Ok(entry.identity)
    }

    fn refused(&self, rejection: &Rejection) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(rejection.reason())
            .or_default() += 1;
        tracing::info!(
            target: "tower_jwt_service_auth::jwt::server",
            audience = self.verifier.audience(),
            reason = rejection.reason(),
            // `Rejection`'s Display escapes the token's text.
            "service token refused: {rejection}"
        );
    }
}

/// Verifies the bearer token of every request; see the [module docs](self).
///
/// # Identity binding
///
/// A request that came over mutual TLS carries the client certificate's
/// [`PeerIdentity`](crate::mtls::PeerIdentity) (the TLS server puts it in the extensions). For such a
/// request the token is accepted only if its issuer is the service the
/// certificate names ([`PeerIdentity::service`](crate::mtls::PeerIdentity::service)); otherwise the answer is
/// `401` with `{"error": "peer_mismatch", ...}` (gRPC: `UNAUTHENTICATED`),
/// counted under the reason `peer_mismatch` and logged with both names.
/// A token is a bearer credential: whoever holds it can send it. Bound to
/// the certificate, a token taken from one service (from a log, a proxy,
/// a compromised host) is useless over any other service's connection,
/// because the thief cannot also present the victim's private key. A
/// request without a `PeerIdentity` (plaintext, a test) is not affected.
///
/// The check is on by default. [`without_peer_binding`] turns it off for
/// the one setup where the TLS peer is by design not the caller: a proxy
/// or gateway that terminates the callers' mutual TLS and opens its own,
/// with its own certificate, forwarding their tokens. There the proxy is
/// the one to bind tokens to its callers' certificates.
///
/// ```
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_jwt_service_auth::jwt::{KeySet, Signer, SigningKey, Verifier, VerifyLayer, VerifyingKey};
/// use tower_jwt_service_auth::mtls::{PeerIdentity, SpiffeId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let secret = [7u8; 32];
/// let keys = KeySet::new().with(VerifyingKey::hs256("k1", &secret).unwrap());
/// let users = ServiceBuilder::new()
///     .layer(VerifyLayer::new(Verifier::new("user-service", keys)))
///     .service(service_fn(|_: Request<String>| async {
///         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
///     }));
/// let token = Signer::new("order-service", SigningKey::hs256("k1", &secret).unwrap())
///     .sign("user-service")
///     .unwrap()
///     .token;
/// let over = |peer: &str| {
///     let mut req = Request::get("/users/1")
///         .header("authorization", format!("Bearer {token}"))
///         .body(String::new())
///         .unwrap();
///     let id = SpiffeId::for_service("demo.local", peer).unwrap();
///     req.extensions_mut().insert(PeerIdentity::new(id));
///     req
/// };
///
/// // order-service's token over order-service's connection...
/// let res = users.clone().oneshot(over("order-service")).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// // ...and over the gateway's.
/// let res = users.oneshot(over("api-gateway")).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// assert!(res.body().contains("\"peer_mismatch\""));
/// # }
/// ```
///
/// [`without_peer_binding`]: VerifyLayer::without_peer_binding
#[derive(Clone)]
pub struct VerifyLayer {
    shared: Arc<Shared>,
    peer_binding: bool,
}

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("verifier", &self.shared.verifier)
            .field("peer_binding", &self.peer_binding)
            .finish_non_exhaustive()
    }
}

impl VerifyLayer {
    /// Verifies with `verifier`, remembering up to
    /// [`DEFAULT_CACHE_CAPACITY`] verified tokens.
    pub fn new(verifier: Verifier) -> Self {
        VerifyLayer::with_cache(verifier, DEFAULT_CACHE_CAPACITY)
    }

    /// Verifies with `verifier`, remembering about `capacity` verified
    /// tokens (`0` turns the cache off). When full, the coldest entries
    /// are evicted; the cache never starts over.
    ///
    /// Cached tokens expire by the verifier's [`Clock`](crate::jwt::verify::Clock)
    /// at `exp` plus its leeway, exactly when a fresh check would refuse
    /// them.
    pub fn with_cache(verifier: Verifier, capacity: usize) -> Self {
        if !verifier.has_permission_policy() {
            tracing::warn!(
                target: "tower_jwt_service_auth::jwt::server",
                audience = verifier.audience(),
                "no permission policy: callers hold whatever permissions their own tokens claim \
                 (grant each issuer its permissions with Verifier::grant)"
            );
        }
        VerifyLayer {
            shared: Arc::new(Shared {
                verifier,
                cache: TokenCache::new(capacity),
                verified: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                permissions_trimmed: AtomicU64::new(0),
                rejected: Mutex::new(HashMap::new()),
            }),
            peer_binding: true,
        }
    }

    /// Accepts a token over a mutual TLS connection whatever service the
    /// client certificate names: only behind a proxy that re-originates
    /// TLS with its own certificate (see
    /// [identity binding](VerifyLayer#identity-binding)).
    pub fn without_peer_binding(mut self) -> Self {
        self.peer_binding = false;
        self
    }

    /// Whether tokens are bound to the client certificate's service.
    pub fn binds_to_peer(&self) -> bool {
        self.peer_binding
    }

    /// Counts since the layer was built.
    pub fn stats(&self) -> AuthStats {
        let mut rejected: Vec<_> = self
            .shared
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(reason, n)| (*reason, *n))
            .collect();
        rejected.sort();
        AuthStats {
            verified: self.shared.verified.load(Ordering::Relaxed),
            cache_hits: self.shared.cache_hits.load(Ordering::Relaxed),
            permissions_trimmed: self.shared.permissions_trimmed.load(Ordering::Relaxed),
            rejected,
        }
    }

    /// How many verified tokens are cached now.
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.len()
    }
}

impl<S> Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Verify {
            inner,
            shared: self.shared.clone(),
            peer_binding: self.peer_binding,
        }
    }
}

/// Verifies bearer tokens. Built by [`VerifyLayer`].
#[derive(Clone)]
pub struct Verify<S> {
    inner: S,
    shared: Arc<Shared>,
    peer_binding: bool,
}

impl<S> Verify<S> {
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

impl<S: fmt::Debug> fmt::Debug for Verify<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verify")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for Verify<S>
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
        let verdict = self.shared.authenticate(&req).and_then(|identity| {
            // Per request, after the cache: the token is the same on every
            // connection, the peer is not.
            if self.peer_binding
                && let Some(peer) = other_peer(req.extensions(), &identity.service)
            {
                tracing::warn!(
                    target: "tower_jwt_service_auth::jwt::server",
                    audience = self.shared.verifier.audience(),
                    issuer = %Escaped(&identity.service),
                    // The SPIFFE grammar has nothing to escape.
                    peer = %peer,
                    "a valid service token came over another service's connection"
                );
                return Err(Rejection::PeerMismatch);
            }
            Ok(identity)
        });
        match verdict {
            Ok(identity) => {
                self.shared.verified.fetch_add(1, Ordering::Relaxed);
                req.extensions_mut().insert(identity);
                ResponseFuture::called(self.inner.call(req))
            }
            Err(rejection) => {
                self.shared.refused(&rejection);
                ResponseFuture::answered(rejection.respond_to(req.headers()))
            }
        }
    }
}
