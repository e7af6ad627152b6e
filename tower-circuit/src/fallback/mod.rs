//! Answers in place of an open circuit, or of any failed call: cached
//! data, a default, a degraded but useful response.
//!
//! A fallback is two functions: `extract` runs on every request before it
//! is sent and keeps what the answer needs (a user id to look up in a
//! cache, say); `handler` runs only when the call fails and turns the kept
//! value and the error into a response, or returns `None` to pass the
//! error on. By default only [`CircuitOpen`] errors are handled;
//! [`FallbackLayer::on_any_error`] widens that. Bound to a breaker with
//! [`FallbackLayer::counted_in`], every answer is counted in its
//! [`BreakerStats::fallbacks`](crate::breaker::BreakerStats::fallbacks) and reported
//! to its `on_fallback` hook.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::breaker::{Breaker, Config};
//! use tower_circuit::fallback::FallbackLayer;
//! use tower_circuit::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = Breaker::new("prices", Config::default())?;
//! breaker.force_open();
//!
//! let service = ServiceBuilder::new()
//!     .layer(
//!         FallbackLayer::new(|sku: &u32| *sku, |sku, _err: &BoxError| Some(format!("cached price of {sku}")))
//!             .counted_in(&breaker),
//!     )
//!     .layer(breaker.errors_layer())
//!     .service(service_fn(|sku: u32| async move { Ok::<_, BoxError>(format!("live price of {sku}")) }));
//!
//! assert_eq!(service.oneshot(7).await?, "cached price of 7");
//! assert_eq!(breaker.stats().fallbacks, 1);
//! # Ok(())
//! # }
//! ```
//!
//! [`CircuitOpen`]: crate::breaker::CircuitOpen

pub mod future;
mod layer;

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

pub use self::layer::FallbackLayer;

use self::future::ResponseFuture;
use crate::BoxError;
use crate::breaker::Breaker;

/// Which failures the fallback answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FallbackOn {
    /// Only calls rejected by an open circuit (the default).
    CircuitOpen,
    /// Every error, including rejections.
    AnyError,
}

/// What each response future shares: the handler, the policy and the breaker.
#[derive(Debug)]
pub(crate) struct Shared<H> {
    pub(crate) handler: H,
    pub(crate) on: FallbackOn,
    pub(crate) breaker: Option<Breaker>,
}

/// Answers with a fallback when the inner service fails. Built by
/// [`FallbackLayer`].
#[derive(Debug)]
pub struct Fallback<S, X, H> {
    inner: S,
    extract: X,
    shared: Arc<Shared<H>>,
}

impl<S: Clone, X: Clone, H> Clone for Fallback<S, X, H> {
    fn clone(&self) -> Self {
        Fallback {
            inner: self.inner.clone(),
            extract: self.extract.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S, X, H> Fallback<S, X, H> {
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

impl<S, X, H, Req, T> Service<Req> for Fallback<S, X, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    X: Fn(&Req) -> T,
    H: Fn(T, &BoxError) -> Option<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, T, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let kept = (self.extract)(&req);
        ResponseFuture::new(self.inner.call(req), kept, self.shared.clone())
    }
}
