//! Error types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitState;

/// The circuit rejected the call without calling the inner service.
///
/// Returned boxed, as a [`BoxError`](crate::BoxError); ask with
/// `err.is::<CircuitOpen>()` or `err.downcast_ref::<CircuitOpen>()`. A
/// server can turn [`retry_after`](CircuitOpen::retry_after) into a
/// `Retry-After` header.
#[derive(Debug, Clone)]
pub struct CircuitOpen {
    name: Arc<str>,
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl CircuitOpen {
    pub(crate) fn new(name: Arc<str>, state: CircuitState, retry_after: Option<Duration>) -> Self {
        CircuitOpen {
            name,
            state,
            retry_after,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state the breaker was in: open, forced open, or half-open with
    /// all its probes in flight.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// How long until the breaker lets probes through, when it is known:
    /// `None` when forced open or half-open.
    ///
    /// When `poll_ready` found the circuit open (the service is then ready
    /// without polling the inner service), this is the time left that
    /// `poll_ready` saw: older than the error by the gap between
    /// `poll_ready` and `call`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.state, self.retry_after) {
            (CircuitState::HalfOpen, _) => write!(
                f,
                "circuit breaker `{}` is half-open and all its probes are in flight",
                self.name
            ),
            (CircuitState::ForcedOpen, _) => {
                write!(f, "circuit breaker `{}` is forced open", self.name)
            }
            (_, Some(left)) => write!(
                f,
                "circuit breaker `{}` is open; half-open in {:.3}s",
                self.name,
                left.as_secs_f64()
            ),
            (_, None) => write!(f, "circuit breaker `{}` is open", self.name),
        }
    }
}

impl std::error::Error for CircuitOpen {}
