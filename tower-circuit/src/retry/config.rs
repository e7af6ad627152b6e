//! The retry layer's settings that are checked when it is built: the
//! budget, and the error for a setting out of range.

use std::fmt;
use std::time::Duration;

/// A setting that is out of range, reported by [`RetryBuilder::build`](super::RetryBuilder::build).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RetryConfigError {
    /// The backoff's base delay is zero.
    ZeroBase,
    /// The backoff's multiplier is below 1 or not finite.
    Multiplier(f64),
    /// The backoff's cap is below its base.
    CapBelowBase,
    /// The budget's window is outside 1 to 60 seconds.
    BudgetWindow(Duration),
    /// The budget's share of retries is outside 0 to 10 (1000 %).
    BudgetShare(f32),
}

impl fmt::Display for RetryConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryConfigError::ZeroBase => {
                f.write_str("backoff base delay must be greater than zero")
            }
            RetryConfigError::Multiplier(m) => {
                write!(
                    f,
                    "backoff multiplier must be a finite number >= 1, got {m}"
                )
            }
            RetryConfigError::CapBelowBase => {
                f.write_str("backoff cap must be at least its base delay")
            }
            RetryConfigError::BudgetWindow(d) => {
                write!(
                    f,
                    "retry budget window must be between 1 s and 60 s, got {d:?}"
                )
            }
            RetryConfigError::BudgetShare(p) => {
                write!(f, "retry budget share must be between 0 and 10, got {p}")
            }
        }
    }
}

impl std::error::Error for RetryConfigError {}

/// The retry budget: retries may be at most `share` of the requests of the
/// last `window`, plus `floor_per_sec` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    /// How far back requests count (1 to 60 s).
    pub window: Duration,
    /// Retries always allowed per second, whatever the traffic.
    pub floor_per_sec: u32,
    /// Retries allowed per request, e.g. `0.2` for 20 %: enforced exactly
    /// (to one part in a million), for any share from 0 to 10.
    pub share: f32,
}

impl Default for RetryBudget {
    /// 20 % of the last 10 s of requests, plus 10 per second.
    fn default() -> Self {
        RetryBudget {
            window: Duration::from_secs(10),
            floor_per_sec: 10,
            share: 0.2,
        }
    }
}
