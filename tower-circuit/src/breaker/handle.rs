//! The handle users hold: [`Breaker`] and its [`BreakerBuilder`].
//!
//! The state machine the handle drives lives in `machine.rs`, the guard a
//! call carries in `guard.rs`, and the queue that reports state changes to
//! hooks and logs in `announce.rs`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::config::{BreakerConfigError, Config};
use super::error::CircuitOpen;
use super::events::{FallbackUsed, Hooks, Rejected, StateChange};
use super::guard::{CallGuard, Lane};
use super::layer::CircuitBreakerLayer;
use super::machine::Shared;
use super::state::CircuitState;
use super::stats::BreakerStats;
use super::window::{CachePadded, lock};
use crate::classify::{ErrorsAsFailures, HttpClassifier};

/// A circuit breaker, shared by every service built from its layers.
///
/// Cloning is cheap and every clone controls the same breaker: keep one to
/// read [`state`](Breaker::state) and [`stats`](Breaker::stats), or to
/// [`force_open`](Breaker::force_open), [`reset`](Breaker::reset) or
/// [`disable`](Breaker::disable) it from an admin endpoint.
///
/// ```
/// use tower_circuit::breaker::{Breaker, Config, CircuitState};
///
/// let breaker = Breaker::new("user-service", Config::default()).unwrap();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// breaker.force_open();
/// assert_eq!(breaker.state(), CircuitState::ForcedOpen);
/// breaker.reset();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// ```
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<BreakerInner>,
}

struct BreakerInner {
    shared: Arc<Shared>,
    /// One per shard, each on its own cache lines: a call clones the `Arc`
    /// of its core's lane, so concurrent calls on different cores do not
    /// bounce one reference count between them.
    lanes: Box<[Arc<CachePadded<Lane>>]>,
}

/// Builds a [`Breaker`] with hooks.
///
/// ```
/// use tower_circuit::breaker::{Breaker, Config};
///
/// let breaker = Breaker::builder("user-service")
///     .config(Config::default().minimum_calls(20))
///     .on_state_change(|change| println!("{}: {} -> {}", change.name, change.from, change.to))
///     .build()
///     .unwrap();
/// # drop(breaker);
/// ```
#[derive(Clone, Debug)]
pub struct BreakerBuilder {
    name: Arc<str>,
    config: Config,
    hooks: Hooks,
}

impl BreakerBuilder {
    /// Sets the configuration (default: [`Config::default`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Calls `hook` on every state change, after it happened.
    ///
    /// Hooks (and the breaker's log lines) run one at a time, in the order
    /// the transitions happened, even when threads race to make them:
    /// [`StateChange::sequence`] counts 1, 2, 3, ... so a gauge set from
    /// the hook always ends on the breaker's real state. No breaker lock is
    /// held while a hook runs, so a hook may call [`Breaker::state`],
    /// [`Breaker::stats`] or even [`Breaker::force_open`]; a change a
    /// hook makes is reported after that hook returns. The price of the
    /// order: a change may be reported by whichever thread is already
    /// reporting an earlier one, just after the call that made it returned.
    /// Keep hooks short and non-blocking, and do not take a lock in a hook
    /// that a caller may hold while it calls into the breaker
    /// ([`force_open`](Breaker::force_open), [`reset`](Breaker::reset),
    /// [`disable`](Breaker::disable) or a call through its layer): reads
    /// ([`state`](Breaker::state), [`stats`](Breaker::stats)) never run
    /// hooks.
    pub fn on_state_change<F>(mut self, hook: F) -> Self
    where
        F: Fn(&StateChange) + Send + Sync + 'static,
    {
        self.hooks.on_state_change = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` on every rejected call.
    pub fn on_rejected<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Rejected) + Send + Sync + 'static,
    {
        self.hooks.on_rejected = Some(Arc::new(hook));
        self
    }

    /// Calls `hook` each time a [fallback](crate::fallback) answers for this breaker.
    pub fn on_fallback<F>(mut self, hook: F) -> Self
    where
        F: Fn(&FallbackUsed) + Send + Sync + 'static,
    {
        self.hooks.on_fallback = Some(Arc::new(hook));
        self
    }

    /// Validates the configuration and builds the breaker, closed.
    ///
    /// Reads tokio's clock, so call it where tests pause time (inside the
    /// runtime) for the breaker to follow the paused clock.
    pub fn build(&self) -> Result<Breaker, BreakerConfigError> {
        self.validate()?;
        Ok(self.build_validated(self.name.clone()))
    }

    pub(crate) fn validate(&self) -> Result<(), BreakerConfigError> {
        self.config.validate()
    }

    /// Builds a breaker from a configuration already validated.
    pub(crate) fn build_validated(&self, name: Arc<str>) -> Breaker {
        Breaker::from_parts(name, self.config.clone(), self.hooks.clone())
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }
}

impl Breaker {
    /// Builds a breaker named `name` (used in errors, events, logs and
    /// metrics), validating `config`.
    pub fn new(name: impl Into<Arc<str>>, config: Config) -> Result<Self, BreakerConfigError> {
        Breaker::builder(name).config(config).build()
    }

    /// Starts a builder, for hooks.
    pub fn builder(name: impl Into<Arc<str>>) -> BreakerBuilder {
        BreakerBuilder {
            name: name.into(),
            config: Config::default(),
            hooks: Hooks::default(),
        }
    }

    fn from_parts(name: Arc<str>, config: Config, hooks: Hooks) -> Self {
        let shards = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let shared = Arc::new(Shared::new(name, config, hooks, shards));
        let lanes = (0..shared.lane_count(shards))
            .map(|shard| {
                Arc::new(CachePadded(Lane {
                    shared: shared.clone(),
                    shard,
                }))
            })
            .collect();
        Breaker {
            inner: Arc::new(BreakerInner { shared, lanes }),
        }
    }

    /// A layer for HTTP clients whose services all use this breaker: 5xx
    /// responses, transport errors and timeouts are failures, other
    /// responses successes (see [`HttpClassifier`]).
    ///
    /// It guards `Service<http::Request<B>, Response = http::Response<B2>>`
    /// only. Over any other service it does not compile, and the error
    /// names [`errors_layer`](Breaker::errors_layer): a `503` must never
    /// pass for a success because the obvious method was the wrong one.
    ///
    /// ```compile_fail
    /// use tower::{Layer, service_fn};
    /// use tower::util::BoxService;
    /// use tower_circuit::breaker::{Breaker, Config};
    ///
    /// let breaker = Breaker::new("numbers", Config::default()).unwrap();
    /// let svc = breaker.layer().layer(service_fn(|n: u32| async move {
    ///     Ok::<_, std::io::Error>(n)
    /// }));
    /// // error[E0277]: the breaker's classifier `HttpClassifier` cannot
    /// //               classify calls taking `u32`
    /// // note: for a service that is not HTTP use `Breaker::errors_layer()` ...
    /// let _ = BoxService::new(svc);
    /// ```
    ///
    /// (Where the service is used through a method, `svc.oneshot(7)`,
    /// rustc reports only that `Service<u32>` is not implemented.)
    pub fn layer(&self) -> CircuitBreakerLayer<HttpClassifier> {
        CircuitBreakerLayer::new(self.clone())
    }

    /// A layer for services that are not HTTP: every `Err` is a failure,
    /// every `Ok` a success, whatever it holds. Use
    /// [`layer`](Breaker::layer) for HTTP, where a `503` is an `Ok`, and
    /// [`CircuitBreakerLayer::classifier`] for any other rule.
    ///
    /// ```
    /// use tower::{Layer, ServiceExt, service_fn};
    /// use tower_circuit::breaker::{Breaker, Config};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let breaker = Breaker::new("numbers", Config::default()).unwrap();
    /// let svc = breaker.errors_layer().layer(service_fn(|n: u32| async move {
    ///     Ok::<_, std::io::Error>(n)
    /// }));
    /// assert_eq!(svc.oneshot(7).await.unwrap(), 7);
    /// # }
    /// ```
    pub fn errors_layer(&self) -> CircuitBreakerLayer<ErrorsAsFailures> {
        CircuitBreakerLayer::new(self.clone()).classifier(ErrorsAsFailures)
    }

    /// A layer for gRPC clients whose services all use this breaker: calls
    /// are judged by their `grpc-status`, read from the response head or
    /// from the trailers at the end of the stream (see
    /// [`crate::grpc::breaker`]). Server-side codes (`UNAVAILABLE`,
    /// `INTERNAL`, ...), HTTP answers from proxies and errors are failures;
    /// the caller's mistakes (`NOT_FOUND`, `INVALID_ARGUMENT`, ...) are
    /// not. Feature `grpc`.
    #[cfg(feature = "grpc")]
    pub fn grpc_layer(&self) -> crate::grpc::GrpcBreakerLayer {
        crate::grpc::GrpcBreakerLayer::new(self.clone())
    }

    /// The breaker's name.
    pub fn name(&self) -> &str {
        &self.inner.shared.name
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &Config {
        &self.inner.shared.config
    }

    /// The current state. An open circuit whose open duration has passed
    /// is reported [`HalfOpen`](CircuitState::HalfOpen), which is what the
    /// next call will find; the move itself (with its hook and log line)
    /// happens on that call. Reading has no side effects: it runs no hook
    /// and takes no lock a hook could wait on.
    pub fn state(&self) -> CircuitState {
        self.inner.shared.observed_state(Instant::now())
    }

    /// While open: the time left until half-open. `None` in any other state,
    /// including forced open.
    pub fn retry_after(&self) -> Option<Duration> {
        let shared = &self.inner.shared;
        match shared.word().state() {
            CircuitState::Open => shared.open_elapsed(Instant::now()),
            _ => None,
        }
    }

    /// A snapshot of the state (as [`state`](Breaker::state) reports it),
    /// the window's counts and the counters. Side-effect free, like `state`.
    pub fn stats(&self) -> BreakerStats {
        let shared = &self.inner.shared;
        let now = Instant::now();
        let state = shared.observed_state(now);
        let totals = shared.totals(now);
        let last_transition = lock(&shared.control).last_transition;
        let retry_after = if state == CircuitState::Open {
            shared.open_elapsed(now)
        } else {
            None
        };
        BreakerStats {
            name: shared.name.to_string(),
            state,
            calls: totals.calls,
            failures: totals.failures,
            slow_calls: totals.slow,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            rejected: shared.rejected.load(Ordering::Relaxed),
            times_opened: shared.times_opened.load(Ordering::Relaxed),
            fallbacks: shared.fallbacks.load(Ordering::Relaxed),
            since_last_transition: now.saturating_duration_since(last_transition),
            retry_after,
        }
    }

    /// Opens the circuit until [`reset`](Breaker::reset): every call is
    /// rejected. For maintenance, or to shed a dependency by hand.
    pub fn force_open(&self) {
        self.inner
            .shared
            .transition_to(None, CircuitState::ForcedOpen);
    }

    /// Closes the circuit with a fresh window, from any state.
    pub fn reset(&self) {
        self.inner.shared.transition_to(None, CircuitState::Closed);
    }

    /// Stops the breaker from rejecting anything: calls are still counted,
    /// so metrics stay meaningful. [`reset`](Breaker::reset) turns it back on.
    pub fn disable(&self) {
        self.inner
            .shared
            .transition_to(None, CircuitState::Disabled);
    }

    /// Admits or rejects one call.
    #[inline]
    pub(crate) fn admit(&self) -> Result<CallGuard, CircuitOpen> {
        let lanes = &self.inner.lanes;
        let lane = &lanes[super::window::shard_hint() & (lanes.len() - 1)];
        CallGuard::admit(lane)
    }

    /// What `poll_ready` needs to fail fast: `Some` if a call now would
    /// surely be rejected (forced open, or open with time left), with the
    /// state and time left the rejection reports. Reads only.
    #[inline]
    pub(crate) fn found_open(&self) -> Option<FoundOpen> {
        let shared = &self.inner.shared;
        match shared.word().state() {
            CircuitState::ForcedOpen => Some(FoundOpen {
                state: CircuitState::ForcedOpen,
                retry_after: None,
            }),
            CircuitState::Open => {
                let left = shared.open_elapsed(Instant::now())?;
                Some(FoundOpen {
                    state: CircuitState::Open,
                    retry_after: Some(left),
                })
            }
            _ => None,
        }
    }

    /// Rejects a call that `poll_ready` let through without the inner
    /// service being ready, because it found the circuit open. The call is
    /// rejected even if the open duration has ended since: its readiness
    /// was decided while open, and the inner service may not be called
    /// unready. The error reports what `poll_ready` found, so the clock is
    /// not read a second time (and the breaker not asked again) per
    /// rejection: a `Service` is called right after it is ready, and the
    /// time left differs by that gap at most.
    #[inline]
    pub(crate) fn reject_unready(&self, found: FoundOpen) -> CircuitOpen {
        self.inner.shared.reject(found.state, found.retry_after)
    }

    /// Counts a fallback answer and reports it to the hook.
    pub(crate) fn fallback_used(&self, circuit_open: bool) {
        let shared = &self.inner.shared;
        shared.fallbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &shared.hooks.on_fallback {
            hook(&FallbackUsed {
                name: shared.name.clone(),
                circuit_open,
            });
        }
    }

    /// Whether two handles control the same breaker.
    pub fn same_as(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// What `poll_ready` found when the circuit was open: the state and time
/// left that the call's [`CircuitOpen`] reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FoundOpen {
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.inner.shared;
        f.debug_struct("Breaker")
            .field("name", &shared.name)
            .field("state", &shared.word().state())
            .field("config", &shared.config)
            .finish()
    }
}
