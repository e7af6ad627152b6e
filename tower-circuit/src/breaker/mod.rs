//! A circuit breaker: stop calling a dependency that is failing, give it
//! time to recover, then probe it carefully.
//!
//! # Why
//!
//! When a dependency fails or hangs, every call that still goes to it ties
//! up a connection, a task and the caller's time, and adds load to a service
//! that is already struggling. A breaker watches the outcomes of recent
//! calls; once too many fail it *opens* and fails calls at once with
//! [`CircuitOpen`], so callers can fall back (see
//! [`crate::fallback`]) or answer `503` with `Retry-After`. After
//! [`open_duration`](Config::open_duration) it lets a few probes through
//! (*half-open*): their success closes the circuit, a failure reopens it.
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::breaker::{Breaker, Config, CircuitState};
//! use tower_circuit::BoxError;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = Breaker::new(
//!     "user-service",
//!     Config::default()
//!         .failure_rate_threshold(0.5)
//!         .minimum_calls(10)
//!         .open_duration(Duration::from_secs(30)),
//! )?;
//!
//! let service = ServiceBuilder::new()
//!     .layer(breaker.errors_layer())
//!     .service(service_fn(|id: u32| async move {
//!         if id.is_multiple_of(2) { Ok(id) } else { Err::<u32, BoxError>("odd".into()) }
//!     }));
//!
//! for id in 0..10 {
//!     let _ = service.clone().oneshot(id).await;
//! }
//! // Five failures in ten calls: the rate reached 50 %.
//! assert_eq!(breaker.state(), CircuitState::Open);
//! let err = service.clone().oneshot(2).await.unwrap_err();
//! assert!(err.is::<tower_circuit::breaker::CircuitOpen>());
//! # Ok(())
//! # }
//! ```
//!
//! # How it decides
//!
//! - **Closed**: calls pass, and their outcomes enter a sliding
//!   [`Window`]: the last N calls, or the last T seconds in buckets. Once the
//!   window holds at least [`minimum_calls`](Config::minimum_calls) and the
//!   failure rate (or, with the [slow-call rule](Config::slow_call), the
//!   slow-call rate) reaches its threshold, the circuit opens.
//! - **Open**: calls are rejected without touching the inner service, until
//!   the open duration has passed. With [`OpenBackoff`] the duration grows on
//!   each consecutive trip.
//! - **Half-open**: at most [`half_open_max_calls`](Config::half_open_max_calls)
//!   probes are in flight at once; the rest are rejected. That many
//!   successful probes close the circuit with an empty window; one failure
//!   reopens it. A probe whose future is dropped gives its slot back.
//!
//! The move from open to half-open happens on the first call after the
//! open duration, not on a timer; [`Breaker::state`] reports it as
//! half-open from that moment without moving it.
//!
//! Every state change bumps an epoch; a call remembers the epoch it was
//! admitted in, and its outcome is dropped if the state has changed since,
//! so a slow call from before an outage never closes or opens the circuit
//! after it.
//!
//! What counts as a failure is up to a [classifier](crate::classify):
//! [`Breaker::layer`] is for HTTP clients and counts 5xx responses and
//! errors (over a service that is not HTTP it does not compile, so a `503`
//! can never pass for a success); [`Breaker::errors_layer`] counts every
//! `Err` of any service, as the example above does. Put timeouts *inside* the breaker so that they count: a call
//! whose future is dropped by an outer timeout records nothing.
//!
//! One outcome is decided before any classifier sees it: a call cut short
//! by the *caller's* deadline (an [`Elapsed`](crate::timeout::Elapsed) with
//! `is_deadline()`, from a deadline already passed, a per-attempt timeout
//! clamped to the deadline, or deadline propagation) is ignored, neither
//! success nor failure. It says how much time the caller had, not how the
//! dependency is doing: counting it let callers with tiny budgets open a
//! healthy dependency's circuit for everyone. A per-attempt timeout that
//! fired on its own limit still counts. This is done in the breaker rather
//! than in each classifier so that a custom classifier cannot get it wrong.
//!
//! Reading the breaker ([`Breaker::state`], [`Breaker::stats`]) has no
//! side effects: an open circuit whose open duration has passed reads as
//! half-open, and moves there (running its hook) on the next call.
//! State-change hooks run in the order of the transitions, with no breaker
//! lock held; see [`BreakerBuilder::on_state_change`] for what a hook may do.

pub mod error;
pub mod events;
pub mod future;

mod announce;
mod config;
pub(crate) mod guard;
mod handle;
mod layer;
mod machine;
mod state;
mod stats;
pub(crate) mod window;

use std::task::{Context, Poll};

use tower_service::Service;

pub use self::config::{
    BreakerConfigError, Config, MAX_BUCKETS, MAX_WINDOW_SIZE, OpenBackoff, SlowCall, Window,
};
pub use self::error::CircuitOpen;
pub use self::handle::{Breaker, BreakerBuilder};
pub use self::layer::CircuitBreakerLayer;
pub use self::state::CircuitState;
pub use self::stats::BreakerStats;

use self::future::ResponseFuture;
pub(crate) use self::handle::FoundOpen;
use crate::BoxError;
use crate::classify::{Classifier, HttpClassifier, MakeClassifier};

/// Guards an inner service with a [`Breaker`].
///
/// Built by [`CircuitBreakerLayer`]; every clone shares the breaker.
///
/// While the circuit is open (or forced open), `poll_ready` is ready at
/// once without asking the inner service, and the call that follows fails
/// with [`CircuitOpen`]: a caller never waits on a saturated dependency
/// only to be rejected. Otherwise readiness is the inner service's.
#[derive(Debug)]
pub struct CircuitBreaker<S, C = HttpClassifier> {
    inner: S,
    breaker: Breaker,
    classifier: C,
    /// `poll_ready` found the circuit open and did not poll the inner
    /// service, so the next call must not reach it; what it found is what
    /// the rejection reports.
    reject_next: Option<FoundOpen>,
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone has not been polled ready.
        CircuitBreaker {
            inner: self.inner.clone(),
            breaker: self.breaker.clone(),
            classifier: self.classifier.clone(),
            reject_next: None,
        }
    }
}

impl<S> CircuitBreaker<S> {
    /// Guards an HTTP service `inner` with `breaker`: 5xx responses and
    /// errors are failures. See [`with_classifier`](Self::with_classifier)
    /// for a service that is not HTTP.
    pub fn new(inner: S, breaker: Breaker) -> Self {
        CircuitBreaker::with_classifier(inner, breaker, HttpClassifier::default())
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Guards `inner` with `breaker`, classifying outcomes with `classifier`.
    pub fn with_classifier(inner: S, breaker: Breaker, classifier: C) -> Self {
        CircuitBreaker {
            inner,
            breaker,
            classifier,
            reject_next: None,
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
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

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError> + 'static,
    C: MakeClassifier<Req>,
    C::Classifier: Classifier<S::Response, S::Error>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C::Classifier>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Fail fast: an open circuit is ready at once, without waiting on
        // the inner service, and the call is rejected in its response
        // future, so the service itself never fails.
        if let Some(found) = self.breaker.found_open() {
            self.reject_next = Some(found);
            return Poll::Ready(Ok(()));
        }
        self.reject_next = None;
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(found) = self.reject_next.take() {
            return ResponseFuture::rejected(self.breaker.reject_unready(found));
        }
        guarded_call(&self.breaker, &self.classifier, &mut self.inner, req)
    }
}

/// Calls `inner` if `breaker` admits the request; shared with the keyed
/// breaker, which picks `breaker` per request.
#[inline]
pub(crate) fn guarded_call<S, C, Req>(
    breaker: &Breaker,
    classifier: &C,
    inner: &mut S,
    req: Req,
) -> ResponseFuture<S::Future, C::Classifier>
where
    S: Service<Req>,
    C: MakeClassifier<Req>,
{
    match breaker.admit() {
        Ok(guard) => {
            let classifier = classifier.make_classifier(&req);
            ResponseFuture::called(inner.call(req), guard, classifier)
        }
        Err(open) => ResponseFuture::rejected(open),
    }
}
