//! Authenticating callers by their client certificate alone: mutual TLS
//! without tokens or keys.
//!
//! [`PeerAuthLayer`] reads the [`PeerIdentity`] the TLS server put in the
//! request's extensions and looks its service up in a [`PeerPolicy`], this
//! service's per-caller grants. A known caller gets a
//! [`ServiceIdentity`](crate::jwt::ServiceIdentity) with its grant, the
//! same extension [`VerifyLayer`](crate::jwt::VerifyLayer) inserts, so
//! [`RequirePermissionLayer`](crate::jwt::RequirePermissionLayer) and the
//! handlers work unchanged whichever layer authenticated the caller:
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_service_auth::jwt::{RequirePermissionLayer, ServiceIdentity};
//! use tower_jwt_service_auth::mtls::{PeerAuthLayer, PeerIdentity, PeerPolicy, SpiffeId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let policy = PeerPolicy::new("demo.local")
//!     .unwrap()
//!     .grant("order-service", ["read:users"])
//!     .grant("api-gateway", ["read:users", "write:users"]);
//! let users = ServiceBuilder::new()
//!     .layer(PeerAuthLayer::new(policy))
//!     .layer(RequirePermissionLayer::new("write:users"))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let caller = req.extensions().get::<ServiceIdentity>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("written by {}", caller.service)))
//!     }));
//!
//! // What the TLS server does for each request on a connection.
//! let from = |service: &str| {
//!     let mut req = Request::post("/users").body(String::new()).unwrap();
//!     let id = SpiffeId::for_service("demo.local", service).unwrap();
//!     req.extensions_mut().insert(PeerIdentity::new(id));
//!     req
//! };
//! let res = users.clone().oneshot(from("api-gateway")).await.unwrap();
//! assert_eq!(res.into_body(), "written by api-gateway");
//! // Known, but not granted `write:users`.
//! let res = users.clone().oneshot(from("order-service")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! // A certificate of the CA, for a service this one does not serve.
//! let res = users.clone().oneshot(from("billing-service")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! // No client certificate at all (a plaintext listener).
//! let res = users.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # }
//! ```
//!
//! # Why a policy, and 401 for callers outside it
//!
//! Every certificate the CA issued passes the handshake, so the handshake
//! only says who the caller is. What it may do is the receiver's to
//! decide, as [`Verifier::grant`](crate::jwt::Verifier::grant) decides it
//! for tokens; with no token, there is not even a claim to intersect with:
//! the grant is the caller's permissions. A caller the policy does not
//! name (or a certificate whose path names no single service, or one from
//! another trust domain) is refused `401`: this service does not know it
//! as a caller, so it is not authenticated here, whatever the CA says.
//! A caller the policy names with an empty grant is known and holds
//! nothing: `403` on every route that requires a permission.
//!
//! # When to use it
//!
//! Certificates are short-lived and bound to a private key that never
//! leaves the caller, so nothing replayable crosses the wire, and there
//! is no token to sign or key to share. But a permission then belongs to
//! a whole service, for as long as its certificate lives: there is no
//! per-call scope, and nothing survives a hop through a proxy that
//! re-originates TLS. Tokens bound to the certificate
//! ([`VerifyLayer`'s identity binding](crate::jwt::VerifyLayer#identity-binding))
//! give both.

/// The response future, shared with the other server layers: the inner
/// call, or a refusal.
pub mod future {
    pub use crate::future::ResponseFuture;
}

mod layer;
mod policy;
mod rejection;
mod stats;

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

pub use self::layer::PeerAuthLayer;
pub use self::policy::PeerPolicy;
pub use self::rejection::Rejection;
pub use self::stats::PeerAuthStats;

use super::PeerIdentity;
use crate::future::ResponseFuture;

/// One target for this module's events.
const TARGET: &str = "tower_jwt_service_auth::mtls::server";

/// Calls the inner service only for a caller whose client certificate the
/// [`PeerPolicy`] knows, with its [`ServiceIdentity`](crate::jwt::ServiceIdentity)
/// in the extensions; answers `401` otherwise (a gRPC call: `grpc-status`
/// 16, `UNAUTHENTICATED`). Built by [`PeerAuthLayer`].
#[derive(Debug, Clone)]
pub struct PeerAuth<S> {
    inner: S,
    policy: Arc<PeerPolicy>,
    stats: PeerAuthStats,
}

impl<S> PeerAuth<S> {
    /// Guards `inner` with `policy`, counting into fresh [`PeerAuthStats`].
    pub fn new(inner: S, policy: PeerPolicy) -> Self {
        PeerAuth {
            inner,
            policy: Arc::new(policy),
            stats: PeerAuthStats::default(),
        }
    }

    /// This service's counters.
    pub fn stats(&self) -> PeerAuthStats {
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

impl<S, ReqB, ResB> Service<Request<ReqB>> for PeerAuth<S>
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
        let peer = req.extensions().get::<PeerIdentity>();
        match self.policy.authenticate(peer) {
            Ok(identity) => {
                self.stats.count_authenticated();
                req.extensions_mut().insert(identity);
                ResponseFuture::called(self.inner.call(req))
            }
            Err(rejection) => {
                self.stats.count_rejection(rejection);
                tracing::info!(
                    target: TARGET,
                    reason = rejection.reason(),
                    // A SPIFFE ID has nothing to escape (see `SpiffeId`).
                    peer = peer.map(tracing::field::display),
                    "client certificate refused"
                );
                ResponseFuture::answered(rejection.respond_to(req.headers()))
            }
        }
    }
}
