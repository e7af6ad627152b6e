//! Breaker configuration, validated when built.

use std::fmt;
use std::time::Duration;

/// The largest count window, in calls: a byte per call, so at most about
/// 100 KB per breaker (a keyed breaker holds one per key).
pub const MAX_WINDOW_SIZE: u32 = 100_000;

/// The most buckets a time window may have: each bucket is 12 bytes per
/// shard and a breaker has up to 64 shards, so at most about 768 KB per
/// breaker. A thousand slices already slide more smoothly than any rate
/// needs.
pub const MAX_BUCKETS: u32 = 1_000;

/// The settings of one circuit breaker.
///
/// Every field has the default the documentation of its setter names; build a
/// [`Breaker`](super::Breaker) from it with [`Breaker::new`](super::Breaker::new),
/// which validates it. With the `serde` feature the struct deserializes from
/// any format serde supports; durations are written as strings such as
/// `"250ms"`, `"30s"` or `"2m"`, or as a number of milliseconds.
///
/// ```
/// use std::time::Duration;
/// use tower_circuit::breaker::{Config, Window};
///
/// let config = Config::default()
///     .failure_rate_threshold(0.5)
///     .minimum_calls(10)
///     .window(Window::Time { duration: Duration::from_secs(10), buckets: 10 })
///     .open_duration(Duration::from_secs(30));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Config {
    /// Failure rate in `(0, 1]` at or above which the circuit opens.
    pub failure_rate_threshold: f64,
    /// Calls the window must hold before its rates can open the circuit.
    pub minimum_calls: u32,
    /// Which outcomes the rates are computed over.
    pub window: Window,
    /// How long the circuit stays open before it lets probes through.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration_serde"))]
    pub open_duration: Duration,
    /// How many probes may be in flight at once while half-open; this many
    /// successful probes close the circuit.
    pub half_open_max_calls: u32,
    /// The optional slow-call rule.
    pub slow_call: Option<SlowCall>,
    /// The optional growth of the open duration on repeated trips.
    pub open_backoff: Option<OpenBackoff>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            failure_rate_threshold: 0.5,
            minimum_calls: 10,
            window: Window::default(),
            open_duration: Duration::from_secs(30),
            half_open_max_calls: 1,
            slow_call: None,
            open_backoff: None,
        }
    }
}

impl Config {
    /// Sets the failure rate at or above which the circuit opens (default `0.5`).
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        self.failure_rate_threshold = rate;
        self
    }

    /// Sets how many calls the window must hold before it can open the
    /// circuit (default `10`): a single failure out of one call is not an outage.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// Sets the sliding window (default: 10 s in 10 buckets).
    pub fn window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Sets how long the circuit stays open before probing (default 30 s).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// Sets how many concurrent probes half-open admits (default `1`).
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.half_open_max_calls = calls;
        self
    }

    /// Turns on the slow-call rule: calls slower than `duration` count as
    /// slow, and a slow-call rate at or above `rate_threshold` opens the circuit.
    pub fn slow_call(mut self, duration: Duration, rate_threshold: f64) -> Self {
        self.slow_call = Some(SlowCall {
            duration,
            rate_threshold,
        });
        self
    }

    /// Makes the open duration grow each time a probe fails (off by default).
    pub fn open_backoff(mut self, backoff: OpenBackoff) -> Self {
        self.open_backoff = Some(backoff);
        self
    }

    /// Checks every setting, returning the first that is out of range.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        let rate_ok = |r: f64| r > 0.0 && r <= 1.0;
        if !rate_ok(self.failure_rate_threshold) {
            return Err(BreakerConfigError::FailureRateThreshold(
                self.failure_rate_threshold,
            ));
        }
        if self.minimum_calls == 0 {
            return Err(BreakerConfigError::MinimumCalls);
        }
        if self.half_open_max_calls == 0 {
            return Err(BreakerConfigError::HalfOpenMaxCalls);
        }
        if self.open_duration.is_zero() {
            return Err(BreakerConfigError::ZeroDuration("open_duration"));
        }
        match self.window {
            Window::Count { size } => {
                if size == 0 {
                    return Err(BreakerConfigError::WindowSize);
                }
                if size > MAX_WINDOW_SIZE {
                    return Err(BreakerConfigError::WindowTooLarge {
                        size,
                        max: MAX_WINDOW_SIZE,
                    });
                }
                if self.minimum_calls > size {
                    return Err(BreakerConfigError::MinimumCallsExceedWindow {
                        minimum_calls: self.minimum_calls,
                        size,
                    });
                }
            }
            Window::Time { duration, buckets } => {
                if buckets == 0 {
                    return Err(BreakerConfigError::Buckets);
                }
                if buckets > MAX_BUCKETS {
                    return Err(BreakerConfigError::TooManyBuckets {
                        buckets,
                        max: MAX_BUCKETS,
                    });
                }
                if duration.is_zero() {
                    return Err(BreakerConfigError::ZeroDuration("window duration"));
                }
                if duration.as_nanos() / u128::from(buckets) == 0 {
                    return Err(BreakerConfigError::BucketTooShort);
                }
            }
        }
        if let Some(slow) = &self.slow_call {
            if slow.duration.is_zero() {
                return Err(BreakerConfigError::ZeroDuration("slow_call.duration"));
            }
            if !rate_ok(slow.rate_threshold) {
                return Err(BreakerConfigError::SlowCallRateThreshold(
                    slow.rate_threshold,
                ));
            }
        }
        if let Some(backoff) = &self.open_backoff {
            if !(backoff.multiplier.is_finite() && backoff.multiplier >= 1.0) {
                return Err(BreakerConfigError::BackoffMultiplier(backoff.multiplier));
            }
            if backoff.max < self.open_duration {
                return Err(BreakerConfigError::BackoffMax);
            }
            if !(0.0..=1.0).contains(&backoff.jitter) {
                return Err(BreakerConfigError::Jitter(backoff.jitter));
            }
        }
        Ok(())
    }
}

/// The sliding window whose outcomes decide whether the circuit opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
pub enum Window {
    /// The outcomes of the last `size` calls, a ring: each new call pushes
    /// out the oldest.
    ///
    /// With calls finishing on several cores, the order of the ring is the
    /// order in which calls reached it, which is not quite the order in
    /// which they finished: once the ring is full, each core hands its
    /// successes in by batches of `size / 8` (at most 16; windows of fewer
    /// than 16 calls take each call at once), so that cores do not take
    /// turns on one lock for every call. A failure or slow call hands
    /// in every core's held successes first, and so does every read
    /// ([`Breaker::stats`](super::Breaker::stats)), so each decision counts
    /// every call recorded before it; only the oldest end of the window
    /// can differ from an exact order, by at most `(batch - 1) × (cores -
    /// 1)` calls. From one core the window is exact.
    Count {
        /// How many calls the window holds, 1 to [`MAX_WINDOW_SIZE`].
        size: u32,
    },
    /// The outcomes of the last `duration`, kept in `buckets` equal slices:
    /// a slice leaves the window as a whole once it is older than `duration`.
    Time {
        /// How far back the window reaches.
        #[cfg_attr(feature = "serde", serde(with = "crate::duration_serde"))]
        duration: Duration,
        /// How many slices the duration is cut into, 1 to [`MAX_BUCKETS`];
        /// more slices slide more smoothly.
        buckets: u32,
    },
}

impl Default for Window {
    /// 10 seconds in 10 buckets, as opossum does.
    fn default() -> Self {
        Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        }
    }
}

/// The slow-call rule: slow calls can open the circuit even when they succeed.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct SlowCall {
    /// Calls that take longer than this are slow.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration_serde"))]
    pub duration: Duration,
    /// Slow-call rate in `(0, 1]` at or above which the circuit opens.
    pub rate_threshold: f64,
}

/// Growth of the open duration while probes keep failing.
///
/// After the `n`th consecutive trip without a close in between, the circuit
/// stays open `min(max, open_duration · multiplier^(n-1))`, then less a
/// random fraction of at most `jitter` of that, so that breakers that opened
/// together do not all probe at the same instant. A close resets `n`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct OpenBackoff {
    /// Factor applied per consecutive trip, at least 1.
    pub multiplier: f64,
    /// The longest the circuit stays open.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration_serde"))]
    pub max: Duration,
    /// The largest fraction, in `[0, 1]`, taken off at random.
    pub jitter: f64,
}

impl OpenBackoff {
    /// Doubles the open duration per trip up to `max`, with 20 % jitter.
    pub fn exponential(max: Duration) -> Self {
        OpenBackoff {
            multiplier: 2.0,
            max,
            jitter: 0.2,
        }
    }

    /// The open duration for the `trips`th consecutive trip (1-based),
    /// before jitter.
    pub(crate) fn duration(&self, base: Duration, trips: u32) -> Duration {
        let exp = i32::try_from(trips.saturating_sub(1)).unwrap_or(i32::MAX);
        let scaled = base.as_secs_f64() * self.multiplier.powi(exp);
        crate::saturating::secs_f64(scaled).min(self.max)
    }
}

/// A setting that is out of range, reported when the breaker is built.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BreakerConfigError {
    /// `failure_rate_threshold` is not in `(0, 1]`.
    FailureRateThreshold(f64),
    /// `slow_call.rate_threshold` is not in `(0, 1]`.
    SlowCallRateThreshold(f64),
    /// `minimum_calls` is zero.
    MinimumCalls,
    /// `minimum_calls` is larger than the count window, so it could never open.
    MinimumCallsExceedWindow {
        /// The configured minimum.
        minimum_calls: u32,
        /// The count window's size.
        size: u32,
    },
    /// `half_open_max_calls` is zero, so the circuit could never close again.
    HalfOpenMaxCalls,
    /// A count window of size zero.
    WindowSize,
    /// A time window with zero buckets.
    Buckets,
    /// A count window larger than [`MAX_WINDOW_SIZE`].
    WindowTooLarge {
        /// The configured size.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// A time window with more buckets than [`MAX_BUCKETS`].
    TooManyBuckets {
        /// The configured number.
        buckets: u32,
        /// The limit.
        max: u32,
    },
    /// Keyed breakers: `max_keys` above [`MAX_KEYS`](crate::keyed::MAX_KEYS).
    TooManyKeys {
        /// The configured bound.
        max_keys: usize,
        /// The limit.
        max: usize,
    },
    /// A time window whose buckets would be shorter than a nanosecond.
    BucketTooShort,
    /// A duration that must be positive is zero; names the setting.
    ZeroDuration(&'static str),
    /// `open_backoff.multiplier` is below 1 or not finite.
    BackoffMultiplier(f64),
    /// `open_backoff.max` is shorter than `open_duration`.
    BackoffMax,
    /// `open_backoff.jitter` is not in `[0, 1]`.
    Jitter(f64),
}

impl fmt::Display for BreakerConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerConfigError::FailureRateThreshold(r) => {
                write!(f, "failure_rate_threshold must be in (0, 1], got {r}")
            }
            BreakerConfigError::SlowCallRateThreshold(r) => {
                write!(f, "slow_call.rate_threshold must be in (0, 1], got {r}")
            }
            BreakerConfigError::MinimumCalls => f.write_str("minimum_calls must be at least 1"),
            BreakerConfigError::MinimumCallsExceedWindow {
                minimum_calls,
                size,
            } => write!(
                f,
                "minimum_calls ({minimum_calls}) exceeds the count window's size ({size}), \
                 so the circuit could never open"
            ),
            BreakerConfigError::HalfOpenMaxCalls => {
                f.write_str("half_open_max_calls must be at least 1")
            }
            BreakerConfigError::WindowSize => {
                f.write_str("a count window's size must be at least 1")
            }
            BreakerConfigError::Buckets => f.write_str("a time window needs at least 1 bucket"),
            BreakerConfigError::WindowTooLarge { size, max } => {
                write!(f, "a count window holds at most {max} calls, got {size}")
            }
            BreakerConfigError::TooManyBuckets { buckets, max } => {
                write!(f, "a time window has at most {max} buckets, got {buckets}")
            }
            BreakerConfigError::TooManyKeys { max_keys, max } => {
                write!(
                    f,
                    "keyed breakers: max_keys is at most {max}, got {max_keys}"
                )
            }
            BreakerConfigError::BucketTooShort => {
                f.write_str("a time window's buckets must be at least 1 ns long")
            }
            BreakerConfigError::ZeroDuration(name) => write!(f, "{name} must be greater than zero"),
            BreakerConfigError::BackoffMultiplier(m) => {
                write!(
                    f,
                    "open_backoff.multiplier must be a finite number >= 1, got {m}"
                )
            }
            BreakerConfigError::BackoffMax => {
                f.write_str("open_backoff.max must be at least open_duration")
            }
            BreakerConfigError::Jitter(j) => {
                write!(f, "open_backoff.jitter must be in [0, 1], got {j}")
            }
        }
    }
}

impl std::error::Error for BreakerConfigError {}
