//! A point-in-time view of a breaker.

use std::time::Duration;

use super::CircuitState;

/// A snapshot of one breaker, from [`Breaker::stats`](super::Breaker::stats).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct BreakerStats {
    /// The breaker's name.
    pub name: String,
    /// Its state.
    pub state: CircuitState,
    /// Calls in the current window (ignored outcomes excluded).
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window (failed or not).
    pub slow_calls: u64,
    /// `failures / calls`, `0.0` for an empty window.
    pub failure_rate: f64,
    /// `slow_calls / calls`, `0.0` for an empty window.
    pub slow_call_rate: f64,
    /// Calls rejected since the breaker was built.
    pub rejected: u64,
    /// Times the circuit opened (forced opens included) since it was built.
    pub times_opened: u64,
    /// Fallbacks used since the breaker was built.
    pub fallbacks: u64,
    /// Time since the last state change, or since the breaker was built.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::duration_serde::serialize_secs")
    )]
    pub since_last_transition: Duration,
    /// While open: time left until half-open.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "crate::duration_serde::serialize_opt_secs")
    )]
    pub retry_after: Option<Duration>,
}
