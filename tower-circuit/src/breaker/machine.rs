//! The breaker's core: the state word and its transitions, and the
//! sliding window calls feed. The guard each admitted call carries is in
//! `guard.rs`; the reports of each transition, in `announce.rs`.
//!
//! The closed state's hot path is one atomic load to admit and, for a
//! success, one window update to record; everything else (rejections,
//! probes, transitions) is `#[cold]` and takes the control lock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

use super::announce::Events;
use super::config::{Config, Window};
use super::error::CircuitOpen;
use super::events::{Hooks, Rejected, StateChange};
use super::guard::Admitted;
use super::state::{CircuitState, Word};
use super::window::lock;
use super::window::{CountWindow, Sample, SlidingWindow, TimeWindow, Totals};
use crate::classify::Outcome;

pub(crate) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) config: Config,
    pub(super) slow_call: Option<Duration>,
    pub(super) origin: Instant,
    pub(super) word: AtomicU64,
    /// While open: when half-open starts, in nanoseconds since `origin`.
    pub(super) open_until: AtomicU64,
    pub(super) window: SlidingWindow,
    pub(super) control: Mutex<Control>,
    pub(super) rejected: AtomicU64,
    pub(super) times_opened: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) hooks: Hooks,
    /// State changes waiting to be reported, in the order they happened.
    pub(super) events: Mutex<Events>,
}

/// State changed only under the control lock: transitions are rare, and
/// one lock keeps them and the half-open bookkeeping simple to reason about.
#[derive(Debug)]
pub(super) struct Control {
    pub(super) probes_in_flight: u32,
    pub(super) probe_successes: u32,
    pub(super) consecutive_trips: u32,
    pub(super) last_transition: Instant,
    /// State changes reported so far: the last one's sequence number.
    pub(super) reported: u64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl Shared {
    /// A closed breaker's shared state; `shards` sizes the window's
    /// per-core parts.
    pub(super) fn new(name: Arc<str>, config: Config, hooks: Hooks, shards: usize) -> Shared {
        let origin = Instant::now();
        let window = match config.window {
            Window::Count { size } => SlidingWindow::Count(CountWindow::new(size, shards, 0)),
            Window::Time { duration, buckets } => {
                let bucket_nanos = nanos(duration) / u64::from(buckets);
                SlidingWindow::Time(TimeWindow::new(bucket_nanos, buckets, shards, 0, origin))
            }
        };
        Shared {
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
        }
    }

    /// How many lanes calls spread over: one per time-window shard, or a
    /// power of two (for the shard mask) with the count window.
    pub(super) fn lane_count(&self, shards: usize) -> usize {
        match &self.window {
            SlidingWindow::Time(w) => w.shards(),
            SlidingWindow::Count(_) => shards.clamp(1, 64).next_power_of_two(),
        }
    }

    #[inline]
    pub(super) fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }

    #[inline]
    pub(super) fn since_origin(&self, t: Instant) -> u64 {
        nanos(t.saturating_duration_since(self.origin))
    }

    /// The state as a caller would find it at `now`, without moving it.
    pub(super) fn observed_state(&self, now: Instant) -> CircuitState {
        match self.word().state() {
            CircuitState::Open if self.open_elapsed(now).is_none() => CircuitState::HalfOpen,
            state => state,
        }
    }

    /// While open: the time left until half-open, or `None` once it passed.
    pub(super) fn open_elapsed(&self, now: Instant) -> Option<Duration> {
        let until = self.open_until.load(Ordering::Relaxed);
        let now = self.since_origin(now);
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    #[inline]
    pub(super) fn admit(&self) -> Result<(u64, Admitted), CircuitOpen> {
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

    pub(super) fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> CircuitOpen {
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
    pub(super) fn record(
        &self,
        shard: usize,
        epoch: u64,
        kind: Admitted,
        start: u64,
        outcome: Outcome,
    ) {
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
                if let Some(totals) = window.record(shard, epoch, success)
                    && (totals.failures > 0 || totals.slow > 0)
                {
                    self.trip_if_needed(epoch, &totals);
                }
            }
            SlidingWindow::Time(window) => {
                let now = Instant::now();
                // Summing the shards costs a lock per shard, so on a success
                // the time window decides only when buckets expired.
                if window.record(shard, epoch, now, success) == Some(true) {
                    self.trip_if_needed(epoch, &window.totals(self.since_origin(now)));
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
            SlidingWindow::Count(window) => match window.record(shard, epoch, sample) {
                Some(totals) => totals,
                None => return,
            },
            SlidingWindow::Time(window) => {
                let now = now.unwrap_or_else(Instant::now);
                match window.record(shard, epoch, now, sample) {
                    // The rates can have risen: a failure or slow call, or
                    // expired buckets.
                    Some(crossed) if failure || slow || crossed => {
                        window.totals(self.since_origin(now))
                    }
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
        // The very rates `stats()` and `StateChange` report, compared
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

    pub(super) fn release_probe(&self, epoch: u64) {
        let mut control = lock(&self.control);
        if self.word() == Word::new(CircuitState::HalfOpen, epoch) {
            control.probes_in_flight -= 1;
        }
    }

    pub(super) fn totals(&self, now: Instant) -> Totals {
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
    pub(super) fn transition_to(&self, from: Option<Word>, to: CircuitState) {
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
}

/// Nanoseconds in `d`, saturating (at 584 years).
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}
