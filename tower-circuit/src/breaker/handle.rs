//! The shared breaker: its state machine, window and counters.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use super::config::{Config, ConfigError, Window};
use super::error::CircuitOpen;
use super::events::{FallbackUsed, Hooks, Rejected, StateChange};
use super::layer::CircuitBreakerLayer;
use super::metrics::Metrics;
use super::state::{CircuitState, Word};
use super::window::lock;
use super::window::{CachePadded, CountWindow, Sample, SlidingWindow, TimeWindow, Totals};
use crate::classify::{ErrorsAsFailures, HttpClassifier, Outcome};

/// A circuit breaker, shared by every service built from its layers.
///
/// Cloning is cheap and every clone controls the same breaker: keep one to
/// read [`state`](Breaker::state) and [`metrics`](Breaker::metrics), or to
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

/// What a call's response future keeps: the breaker and the shard to
/// record into.
#[derive(Debug)]
pub(crate) struct Lane {
    shared: Arc<Shared>,
    shard: usize,
}

pub(crate) struct Shared {
    name: Arc<str>,
    config: Config,
    slow_call: Option<Duration>,
    origin: Instant,
    word: AtomicU64,
    /// While open: when half-open starts, in nanoseconds since `origin`.
    open_until: AtomicU64,
    window: SlidingWindow,
    control: Mutex<Control>,
    rejected: AtomicU64,
    times_opened: AtomicU64,
    fallbacks: AtomicU64,
    hooks: Hooks,
    /// State changes waiting to be reported, in the order they happened.
    events: Mutex<Events>,
}

/// The queue that makes hooks and log lines follow the transitions' order.
///
/// A transition is queued under the control lock, so the queue's order is
/// the transitions' order. One thread at a time (`dispatching`) drains it
/// with no lock held while a hook runs: a hook may read or control the
/// breaker, and a transition it causes is queued and reported after it.
///
/// The queue is bounded by [`MAX_QUEUED_CHANGES`]: it only grows while a
/// hook is slower than the transitions (a hook that blocks, say), and then
/// the oldest unreported changes are dropped, counted and logged. The newest
/// are kept, so a gauge set from the hook still ends on the real state, and
/// the gap shows in [`StateChange::sequence`].
#[derive(Debug, Default)]
struct Events {
    queue: VecDeque<StateChange>,
    dispatching: bool,
    /// Changes dropped unreported since the last report of a drop.
    dropped: u64,
}

/// The most state changes waiting for their hook at once.
const MAX_QUEUED_CHANGES: usize = 4096;

/// State changed only under the control lock: transitions are rare, and
/// one lock keeps them and the half-open bookkeeping simple to reason about.
#[derive(Debug)]
struct Control {
    probes_in_flight: u32,
    probe_successes: u32,
    consecutive_trips: u32,
    last_transition: Instant,
    /// State changes reported so far: the last one's sequence number.
    reported: u64,
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
    /// [`Breaker::metrics`] or even [`Breaker::force_open`]; a change a
    /// hook makes is reported after that hook returns. The price of the
    /// order: a change may be reported by whichever thread is already
    /// reporting an earlier one, just after the call that made it returned.
    /// Keep hooks short and non-blocking, and do not take a lock in a hook
    /// that a caller may hold while it calls into the breaker
    /// ([`force_open`](Breaker::force_open), [`reset`](Breaker::reset),
    /// [`disable`](Breaker::disable) or a call through its layer): reads
    /// ([`state`](Breaker::state), [`metrics`](Breaker::metrics)) never run
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
    pub fn build(&self) -> Result<Breaker, ConfigError> {
        self.build_named(self.name.clone())
    }

    pub(crate) fn build_named(&self, name: Arc<str>) -> Result<Breaker, ConfigError> {
        self.validate()?;
        Ok(self.build_validated(name))
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
    pub fn new(name: impl Into<Arc<str>>, config: Config) -> Result<Self, ConfigError> {
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
        let window = match config.window {
            Window::Count { size } => SlidingWindow::Count(CountWindow::new(size, 0)),
            Window::Time { duration, buckets } => {
                let bucket_nanos = nanos(duration) / u64::from(buckets);
                SlidingWindow::Time(TimeWindow::new(bucket_nanos, buckets, shards, 0))
            }
        };
        let lane_count = match &window {
            SlidingWindow::Time(w) => w.shards(),
            SlidingWindow::Count(_) => shards.clamp(1, 64).next_power_of_two(),
        };
        let origin = Instant::now();
        let shared = Arc::new(Shared {
            name,
            slow_call: config.slow_call.map(|s| s.duration),
            config,
            origin,
            word: AtomicU64::new(Word::new(CircuitState::Closed, 0).0),
            open_until: AtomicU64::new(0),
            window,
            control: Mutex::new(Control {
                probes_in_flight: 0,
                probe_successes: 0,
                consecutive_trips: 0,
                last_transition: origin,
                reported: 0,
            }),
            rejected: AtomicU64::new(0),
            times_opened: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            hooks,
            events: Mutex::new(Events::default()),
        });
        let lanes = (0..lane_count)
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

    /// A layer whose services all use this breaker and count every `Err` as
    /// a failure. See [`CircuitBreakerLayer`] to choose another classifier.
    pub fn layer(&self) -> CircuitBreakerLayer<ErrorsAsFailures> {
        CircuitBreakerLayer::new(self.clone())
    }

    /// A layer for HTTP clients: 5xx responses and errors are failures, other
    /// responses successes (see [`HttpClassifier`]).
    pub fn http_layer(&self) -> CircuitBreakerLayer<HttpClassifier> {
        CircuitBreakerLayer::new(self.clone()).classifier(HttpClassifier::default())
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
    pub fn metrics(&self) -> Metrics {
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
        Metrics {
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
        let (epoch, kind) = lane.shared.admit()?;
        let start = match lane.shared.slow_call {
            Some(_) => lane.shared.since_origin(Instant::now()),
            None => 0,
        };
        Ok(CallGuard {
            lane: Some(lane.clone()),
            epoch,
            kind,
            start,
        })
    }

    /// Whether a call now would surely be rejected: forced open, or open
    /// with time left. Reads only; `poll_ready` uses it to fail fast.
    #[inline]
    pub(crate) fn would_reject(&self) -> bool {
        let shared = &self.inner.shared;
        match shared.word().state() {
            CircuitState::ForcedOpen => true,
            CircuitState::Open => shared.open_elapsed(Instant::now()).is_some(),
            _ => false,
        }
    }

    /// Rejects a call that `poll_ready` let through without the inner
    /// service being ready, because the circuit was open then. If the
    /// circuit has since let calls through (the open duration ended), the
    /// call is still rejected: its readiness was decided while open, and
    /// the inner service may not be called unready.
    pub(crate) fn reject_unready(&self) -> CircuitOpen {
        match self.admit() {
            Err(open) => open,
            // Dropping the guard records nothing and gives back a probe slot.
            Ok(_guard) => self
                .inner
                .shared
                .reject(CircuitState::Open, Some(Duration::ZERO)),
        }
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

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// How a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Closed: the outcome enters the window and may open the circuit.
    Counted,
    /// Disabled: the outcome enters the window only.
    MetricsOnly,
    /// Half-open: one of the limited probes.
    Probe,
}

/// A call in flight. Finishing it records the outcome; dropping it
/// unfinished (the caller gave up) gives back a half-open probe slot
/// without recording anything, so the breaker is never stuck half-open.
#[derive(Debug)]
pub(crate) struct CallGuard {
    lane: Option<Arc<CachePadded<Lane>>>,
    epoch: u64,
    kind: Admitted,
    /// When the call started, in nanoseconds since the breaker's origin;
    /// only read with the slow-call rule on. Kept as a `u64` rather than an
    /// `Option<Instant>` to keep the response future small: it is moved on
    /// every call.
    start: u64,
}

impl CallGuard {
    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(lane) = self.lane.take() {
            lane.shared
                .record(lane.shard, self.epoch, self.kind, self.start, outcome);
        }
    }
}

impl Drop for CallGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take()
            && self.kind == Admitted::Probe
        {
            lane.shared.release_probe(self.epoch);
        }
    }
}

// === impl Shared ===

impl Shared {
    #[inline]
    fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    #[inline]
    fn since_origin(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.origin))
    }

    /// The state as a caller would find it at `now`, without moving it.
    fn observed_state(&self, now: Instant) -> CircuitState {
        match self.word().state() {
            CircuitState::Open if self.open_elapsed(now).is_none() => CircuitState::HalfOpen,
            state => state,
        }
    }

    /// While open: the time left until half-open, or `None` once it passed.
    fn open_elapsed(&self, now: Instant) -> Option<Duration> {
        let until = self.open_until.load(Ordering::Relaxed);
        let now = self.since_origin(now);
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    #[inline]
    fn admit(&self) -> Result<(u64, Admitted), CircuitOpen> {
        // The closed state is the hot path: one atomic load decides it.
        let word = self.word();
        if word.state() == CircuitState::Closed {
            return Ok((word.epoch(), Admitted::Counted));
        }
        self.admit_slow()
    }

    #[cold]
    fn admit_slow(&self) -> Result<(u64, Admitted), CircuitOpen> {
        loop {
            let word = self.word();
            match word.state() {
                CircuitState::Closed => return Ok((word.epoch(), Admitted::Counted)),
                CircuitState::Disabled => return Ok((word.epoch(), Admitted::MetricsOnly)),
                CircuitState::ForcedOpen => return Err(self.reject(CircuitState::ForcedOpen, None)),
                CircuitState::Open => match self.open_elapsed(Instant::now()) {
                    Some(left) => return Err(self.reject(CircuitState::Open, Some(left))),
                    None => self.to_half_open(word),
                },
                CircuitState::HalfOpen => {
                    let mut control = lock(&self.control);
                    if self.word() != word {
                        continue;
                    }
                    if control.probes_in_flight < self.config.half_open_max_calls {
                        control.probes_in_flight += 1;
                        return Ok((word.epoch(), Admitted::Probe));
                    }
                    drop(control);
                    return Err(self.reject(CircuitState::HalfOpen, None));
                }
            }
        }
    }

    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> CircuitOpen {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        if let Some(hook) = &self.hooks.on_rejected {
            hook(&Rejected {
                name: self.name.clone(),
                state,
                retry_after,
            });
        }
        CircuitOpen::new(self.name.clone(), state, retry_after)
    }

    fn to_half_open(&self, seen: Word) {
        self.transition_to(Some(seen), CircuitState::HalfOpen);
    }

    /// Records a finished call. The common case, a success in the closed
    /// state without the slow-call rule, stays small enough to inline into
    /// the response future; everything else goes through `record_other`.
    #[inline]
    fn record(&self, shard: usize, epoch: u64, kind: Admitted, start: u64, outcome: Outcome) {
        if kind != Admitted::Counted || outcome != Outcome::Success || self.slow_call.is_some() {
            return self.record_other(shard, epoch, kind, start, outcome);
        }
        let success = Sample {
            failure: false,
            slow: false,
        };
        // A success can only open the circuit if the window holds failures
        // or slow calls (it may bring the window up to `minimum_calls`).
        match &self.window {
            SlidingWindow::Count(window) => {
                if let Some(totals) = window.record(epoch, success)
                    && (totals.failures > 0 || totals.slow > 0)
                {
                    self.trip_if_needed(epoch, &totals);
                }
            }
            SlidingWindow::Time(window) => {
                let at = self.since_origin(Instant::now());
                // Summing the shards costs a lock per shard, so on a success
                // the time window decides only when buckets expired.
                if window.record(shard, epoch, at, success) == Some(true) {
                    self.trip_if_needed(epoch, &window.totals(at));
                }
            }
        }
    }

    #[cold]
    fn trip_if_needed(&self, epoch: u64, totals: &Totals) {
        if self.should_trip(totals) {
            self.transition_to(
                Some(Word::new(CircuitState::Closed, epoch)),
                CircuitState::Open,
            );
        }
    }

    #[cold]
    fn record_other(&self, shard: usize, epoch: u64, kind: Admitted, start: u64, outcome: Outcome) {
        let failure = match outcome {
            Outcome::Success => false,
            Outcome::Failure => true,
            Outcome::Ignored => {
                if kind == Admitted::Probe {
                    self.release_probe(epoch);
                }
                return;
            }
        };
        let mut now = None;
        let slow = match self.slow_call {
            Some(limit) => {
                let t = Instant::now();
                now = Some(t);
                self.since_origin(t).saturating_sub(start) > nanos(limit)
            }
            None => false,
        };
        if kind == Admitted::Probe {
            self.probe_finished(epoch, failure || slow);
            return;
        }
        let sample = Sample { failure, slow };
        let totals = match &self.window {
            SlidingWindow::Count(window) => match window.record(epoch, sample) {
                Some(totals) => totals,
                None => return,
            },
            SlidingWindow::Time(window) => {
                let at = self.since_origin(now.unwrap_or_else(Instant::now));
                match window.record(shard, epoch, at, sample) {
                    // The rates can have risen: a failure or slow call, or
                    // expired buckets.
                    Some(crossed) if failure || slow || crossed => window.totals(at),
                    _ => return,
                }
            }
        };
        if kind == Admitted::Counted {
            self.trip_if_needed(epoch, &totals);
        }
    }

    #[inline]
    fn should_trip(&self, totals: &Totals) -> bool {
        if totals.calls < u64::from(self.config.minimum_calls) {
            return false;
        }
        // The very rates `metrics()` and `StateChange` report, compared
        // with the threshold: `failures >= threshold * calls` rounded the
        // other way (55 of 100 at 0.55 stayed closed while reporting 0.55).
        let failing =
            totals.failures > 0 && totals.failure_rate() >= self.config.failure_rate_threshold;
        let slow = match &self.config.slow_call {
            Some(rule) => totals.slow > 0 && totals.slow_call_rate() >= rule.rate_threshold,
            None => false,
        };
        failing || slow
    }

    fn probe_finished(&self, epoch: u64, failed: bool) {
        let half_open = Word::new(CircuitState::HalfOpen, epoch);
        let mut control = lock(&self.control);
        if self.word() != half_open {
            return;
        }
        control.probes_in_flight -= 1;
        let next = if failed {
            CircuitState::Open
        } else {
            control.probe_successes += 1;
            if control.probe_successes < self.config.half_open_max_calls {
                return;
            }
            CircuitState::Closed
        };
        let probes = Totals {
            calls: u64::from(control.probe_successes) + u64::from(failed),
            failures: u64::from(failed),
            slow: 0,
        };
        let mut change = self.apply(&mut control, half_open, next);
        // Leaving half-open, the probes decided, not the window.
        change.calls = probes.calls;
        change.failure_rate = probes.failure_rate();
        change.slow_call_rate = 0.0;
        self.enqueue(&mut control, change);
        drop(control);
        self.dispatch();
    }

    fn release_probe(&self, epoch: u64) {
        let mut control = lock(&self.control);
        if self.word() == Word::new(CircuitState::HalfOpen, epoch) {
            control.probes_in_flight -= 1;
        }
    }

    fn totals(&self, now: Instant) -> Totals {
        match &self.window {
            SlidingWindow::Count(w) => w.totals(),
            SlidingWindow::Time(w) => w.totals(self.since_origin(now)),
        }
    }

    /// Moves to `to` if the breaker is still in `from` (any state if `None`).
    ///
    /// A manual move to the state the breaker is already in changes
    /// nothing and reports nothing, except that `reset` of a closed breaker
    /// still starts a fresh window.
    fn transition_to(&self, from: Option<Word>, to: CircuitState) {
        let mut control = lock(&self.control);
        let current = self.word();
        if from.is_some_and(|from| from != current) {
            return;
        }
        let same = current.state() == to;
        if same && to != CircuitState::Closed {
            return;
        }
        let change = self.apply(&mut control, current, to);
        if !same {
            self.enqueue(&mut control, change);
        }
        drop(control);
        self.dispatch();
    }

    /// Queues a change for its hook and log line, numbering it. Called
    /// under the control lock, so the queue's order is the transitions'.
    fn enqueue(&self, control: &mut Control, mut change: StateChange) {
        control.reported += 1;
        change.sequence = control.reported;
        let mut events = lock(&self.events);
        if events.queue.len() >= MAX_QUEUED_CHANGES {
            events.queue.pop_front();
            events.dropped += 1;
        }
        events.queue.push_back(change);
    }

    /// Reports queued changes in order, unless another thread (or a hook
    /// further up this thread's stack) is already doing so: it will report
    /// them. No lock is held while a hook runs.
    fn dispatch(&self) {
        {
            let mut events = lock(&self.events);
            if events.dispatching || events.queue.is_empty() {
                return;
            }
            events.dispatching = true;
        }
        // A panicking hook must not leave the queue without a dispatcher.
        struct Dispatching<'a>(&'a Mutex<Events>);
        impl Drop for Dispatching<'_> {
            fn drop(&mut self) {
                lock(self.0).dispatching = false;
            }
        }
        let guard = Dispatching(&self.events);
        loop {
            let (next, dropped) = {
                let mut events = lock(&self.events);
                let dropped = std::mem::take(&mut events.dropped);
                match events.queue.pop_front() {
                    Some(change) => (change, dropped),
                    None => {
                        // Released under the same lock that saw the queue
                        // empty, so nothing queued meanwhile is left behind.
                        events.dispatching = false;
                        drop(events);
                        std::mem::forget(guard);
                        return;
                    }
                }
            };
            if dropped > 0 {
                tracing::warn!(
                    breaker = %self.name,
                    dropped,
                    "state-change hooks fell behind; the oldest unreported changes were dropped"
                );
            }
            self.announce(next);
        }
    }

    /// Performs a transition under the control lock; the caller announces it
    /// once the lock is released, so hooks may call back into the breaker.
    fn apply(&self, control: &mut Control, current: Word, to: CircuitState) -> StateChange {
        let now = Instant::now();
        let epoch = current.epoch() + 1;
        let totals = self.totals(now);
        let mut open_for = None;
        match to {
            CircuitState::Open => {
                control.consecutive_trips = control.consecutive_trips.saturating_add(1);
                let duration = self.open_duration(control.consecutive_trips);
                self.open_until.store(
                    self.since_origin(now).saturating_add(nanos(duration)),
                    Ordering::Relaxed,
                );
                self.times_opened.fetch_add(1, Ordering::Relaxed);
                open_for = Some(duration);
            }
            CircuitState::ForcedOpen => {
                self.times_opened.fetch_add(1, Ordering::Relaxed);
            }
            CircuitState::HalfOpen => {
                control.probes_in_flight = 0;
                control.probe_successes = 0;
            }
            CircuitState::Closed | CircuitState::Disabled => control.consecutive_trips = 0,
        }
        match to {
            // The window keeps its counts for metrics, but moves to the new
            // epoch: calls admitted before the change (still in flight)
            // are dropped when they finish, in the figures too.
            CircuitState::Open | CircuitState::ForcedOpen | CircuitState::HalfOpen => {
                match &self.window {
                    SlidingWindow::Count(w) => w.retag(epoch),
                    SlidingWindow::Time(w) => w.retag(epoch),
                }
            }
            CircuitState::Closed | CircuitState::Disabled => match &self.window {
                SlidingWindow::Count(w) => w.reset(epoch),
                SlidingWindow::Time(w) => w.reset(epoch, self.since_origin(now)),
            },
        }
        control.last_transition = now;
        // Published last, with release ordering: whoever sees the new state
        // also sees `open_until` and the fresh window.
        self.word.store(Word::new(to, epoch).0, Ordering::Release);
        StateChange {
            name: self.name.clone(),
            from: current.state(),
            to,
            calls: totals.calls,
            failure_rate: totals.failure_rate(),
            slow_call_rate: totals.slow_call_rate(),
            open_for,
            sequence: 0,
        }
    }

    fn open_duration(&self, trips: u32) -> Duration {
        let base = self.config.open_duration;
        match &self.config.open_backoff {
            None => base,
            Some(backoff) => {
                let full = backoff.duration(base, trips);
                if backoff.jitter == 0.0 {
                    return full;
                }
                let cut = backoff.jitter * rand::rng().random::<f64>();
                crate::saturating::scale(full, 1.0 - cut)
            }
        }
    }

    fn announce(&self, change: StateChange) {
        let name = &*change.name;
        let (from, to) = (change.from.as_str(), change.to.as_str());
        match change.to {
            CircuitState::Open | CircuitState::ForcedOpen => tracing::warn!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                slow_call_rate = change.slow_call_rate,
                calls = change.calls,
                open_for_secs = change.open_for.map(|d| d.as_secs_f64()),
                "circuit breaker opened"
            ),
            CircuitState::HalfOpen => tracing::info!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                calls = change.calls,
                "circuit breaker half-open, probing"
            ),
            CircuitState::Closed => tracing::info!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                calls = change.calls,
                "circuit breaker closed"
            ),
            CircuitState::Disabled => tracing::warn!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                "circuit breaker disabled: calls are counted but never rejected"
            ),
        }
        if let Some(hook) = &self.hooks.on_state_change {
            hook(&change);
        }
    }
}

/// Nanoseconds in `d`, saturating (at 584 years).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}
