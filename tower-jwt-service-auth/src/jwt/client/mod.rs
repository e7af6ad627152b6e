//! Attaching service tokens to outbound requests.
//!
//! [`SignTokenLayer`] adds `Authorization: Bearer <token>` for one target
//! service (the token's audience). It signs once and reuses the token,
//! signing a fresh one once 80 % of its lifetime has passed, one signer at
//! a time while the others keep using the still-valid token; so most
//! requests pay for a header insert rather than a signature (an Ed25519
//! signature costs tens of microseconds). A `401` from the server drops
//! the cached token, so the next request carries a new one.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_service_auth::jwt::client::SignTokenLayer;
//! use tower_jwt_service_auth::jwt::keys::SigningKey;
//! use tower_jwt_service_auth::jwt::sign::Signer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let signer = Signer::new("order-service", SigningKey::hs256("k1", &[9u8; 32]).unwrap());
//! let to_users = ServiceBuilder::new()
//!     .layer(SignTokenLayer::new(signer, "user-service"))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let auth = req.headers()["authorization"].to_str().unwrap().to_owned();
//!         Ok::<_, tower::BoxError>(Response::new(auth))
//!     }));
//! let res = to_users.oneshot(Request::get("/users/7").body(()).unwrap()).await.unwrap();
//! assert!(res.body().starts_with("Bearer "));
//! # }
//! ```

pub mod future;

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};

use http::header::{AUTHORIZATION, HeaderValue};
use http::{Request, Response};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use self::future::ResponseFuture;
use crate::jwt::sign::{SignError, Signer};

/// The error type of the client layer: the inner error, or a [`SignError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// When, as a share of its lifetime, a cached token is replaced.
const REFRESH_AT: f64 = 0.8;

#[derive(Debug, Clone)]
struct Cached {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

pub(crate) struct Shared {
    signer: Signer,
    audience: String,
    cached: RwLock<Option<Cached>>,
    /// Held while signing, so only one caller signs at a time.
    signing: Mutex<()>,
}

impl Shared {
    /// The header to send now: the cached token while fresh; a new one when
    /// due (signed by one caller while the others keep the old one until it
    /// expires).
    fn header(&self) -> Result<HeaderValue, SignError> {
        let now = Instant::now();
        // Read under the lock, decide outside it: signing takes the write lock.
        let current = self
            .cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(cached) = current {
            if now < cached.refresh_at {
                return Ok(cached.header);
            }
            if now < cached.expires_at {
                return match self.signing.try_lock() {
                    Ok(_guard) => self.sign(now),
                    // Someone else is signing; this token is still valid.
                    Err(_) => Ok(cached.header),
                };
            }
        }
        let _guard = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        // Another caller may have signed while this one waited.
        let current = self
            .cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(cached) = current
            && now < cached.refresh_at
        {
            return Ok(cached.header);
        }
        self.sign(now)
    }

    fn sign(&self, now: Instant) -> Result<HeaderValue, SignError> {
        let token = self.signer.sign(&self.audience)?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.token))
            .map_err(|e| SignError::new(e.to_string()))?;
        header.set_sensitive(true);
        let lifetime = self.signer.lifetime();
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(Cached {
            header: header.clone(),
            refresh_at: now + lifetime.mul_f64(REFRESH_AT),
            expires_at: now + lifetime,
        });
        tracing::debug!(
            target: "tower_jwt_service_auth::jwt::client",
            service = self.signer.service(),
            audience = %self.audience,
            "signed a service token"
        );
        Ok(header)
    }

    /// Forgets the cached token (the server refused it).
    pub(crate) fn invalidate(&self) {
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// Signs and attaches service tokens for one target service; see the
/// [module docs](self). Every service built from one layer shares the cache.
#[derive(Clone)]
pub struct SignTokenLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for SignTokenLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignTokenLayer")
            .field("service", &self.shared.signer.service())
            .field("audience", &self.shared.audience)
            .finish_non_exhaustive()
    }
}

impl SignTokenLayer {
    /// Signs with `signer` for the target service `audience`.
    pub fn new(signer: Signer, audience: impl Into<String>) -> Self {
        SignTokenLayer {
            shared: Arc::new(Shared {
                signer,
                audience: audience.into(),
                cached: RwLock::new(None),
                signing: Mutex::new(()),
            }),
        }
    }
}

impl<S> Layer<S> for SignTokenLayer {
    type Service = SignToken<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SignToken {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// Attaches service tokens. Built by [`SignTokenLayer`].
#[derive(Clone)]
pub struct SignToken<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> SignToken<S> {
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

impl<S: fmt::Debug> fmt::Debug for SignToken<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignToken")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for SignToken<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ResB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<ReqB>) -> Self::Future {
        match self.shared.header() {
            Ok(header) => {
                req.headers_mut().insert(AUTHORIZATION, header);
                ResponseFuture::called(self.inner.call(req), self.shared.clone())
            }
            Err(error) => ResponseFuture::failed(error),
        }
    }
}
