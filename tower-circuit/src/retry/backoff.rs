//! Exponential backoff with jitter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;

use crate::saturating::{scale, secs_f64};

/// How the delay before each retry is drawn.
///
/// With `exp = min(cap, base · multiplier^n)` for the `n`th retry (from 0):
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// `U(0, exp)`: the default, AWS's and gRPC's choice; spreads retries most.
    Full,
    /// `exp / 2 + U(0, exp / 2)`.
    Equal,
    /// `min(cap, U(base, 3 · previous delay))`, starting from `base`.
    Decorrelated,
    /// `exp + U(0, max)`: the exponential delay plus up to `max` of spread,
    /// e.g. `Additive(Duration::from_secs(1))` for `+ U(0, 1 s)`.
    Additive(Duration),
    /// `exp` exactly; for tests and for callers that add their own spread.
    None,
}

/// A source of uniform random numbers in `[0, 1)`.
///
/// The default draws from the thread's generator, so every retry session
/// has its own sequence. Tests inject a fixed or seeded source.
pub trait Random: Send + Sync {
    /// A number in `[0, 1)`.
    fn unit(&self) -> f64;
}

impl<F> Random for F
where
    F: Fn() -> f64 + Send + Sync,
{
    fn unit(&self) -> f64 {
        self()
    }
}

/// Draws from `rand`'s thread-local generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadRandom;

impl Random for ThreadRandom {
    fn unit(&self) -> f64 {
        rand::rng().random::<f64>()
    }
}

/// Exponential backoff: base delay, multiplier and cap, with [`Jitter`].
#[derive(Clone)]
pub struct Backoff {
    pub(crate) base: Duration,
    pub(crate) multiplier: f64,
    pub(crate) cap: Duration,
    pub(crate) jitter: Jitter,
    pub(crate) random: Arc<dyn Random>,
}

impl Default for Backoff {
    /// 1 s base, doubling, capped at 30 s, full jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            multiplier: 2.0,
            cap: Duration::from_secs(30),
            jitter: Jitter::Full,
            random: Arc::new(ThreadRandom),
        }
    }
}

impl fmt::Debug for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("base", &self.base)
            .field("multiplier", &self.multiplier)
            .field("cap", &self.cap)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// Sets the first delay (default 1 s).
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// Sets the growth per retry (default 2).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the longest delay (default 30 s).
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Sets the jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Replaces the random source.
    pub fn random(mut self, random: impl Random + 'static) -> Self {
        self.random = Arc::new(random);
        self
    }

    /// The exponential delay of retry `n` (from 0), before jitter.
    pub fn exponential(&self, n: u32) -> Duration {
        let exp = i32::try_from(n).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.multiplier.powi(exp);
        secs_f64(secs).min(self.cap)
    }

    /// The delay before retry `n` (from 0); `previous` is the last delay
    /// drawn in this session (used by decorrelated jitter).
    pub fn delay(&self, n: u32, previous: Option<Duration>) -> Duration {
        let exp = self.exponential(n);
        let u = self.random.unit().clamp(0.0, 1.0);
        match self.jitter {
            // Saturating throughout: a cap or base of `Duration::MAX` is a
            // valid (if odd) configuration, not a reason to panic.
            Jitter::Full => scale(exp, u),
            Jitter::Equal => (exp / 2).saturating_add(scale(exp / 2, u)),
            Jitter::Decorrelated => {
                let prev = previous.unwrap_or(self.base).max(self.base);
                let high = prev.saturating_mul(3);
                self.base
                    .saturating_add(scale(high.saturating_sub(self.base), u))
                    .min(self.cap)
            }
            Jitter::Additive(max) => exp.saturating_add(scale(max, u)),
            Jitter::None => exp,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), super::RetryConfigError> {
        use super::RetryConfigError as E;
        if self.base.is_zero() {
            return Err(E::ZeroBase);
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(E::Multiplier(self.multiplier));
        }
        if self.cap < self.base {
            return Err(E::CapBelowBase);
        }
        Ok(())
    }
}
