//! Error types.

use std::fmt;
use std::time::Duration;

/// A call ran out of time: its own timeout fired, or the deadline of the
/// logical call it belongs to passed.
///
/// Returned boxed; ask with `err.is::<Elapsed>()`. A circuit breaker
/// counts the call's own timeout (`is_deadline() == false`) as a failure,
/// whatever its classifier, and ignores a deadline cut
/// (`is_deadline() == true`): the caller ran out of time, which says
/// nothing about the dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elapsed {
    limit: Duration,
    deadline: bool,
}

impl Elapsed {
    pub(crate) fn timeout(limit: Duration) -> Self {
        Elapsed {
            limit,
            deadline: false,
        }
    }

    pub(crate) fn deadline(limit: Duration) -> Self {
        Elapsed {
            limit,
            deadline: true,
        }
    }

    /// The time the call was given.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Whether the deadline of the whole logical call (possibly set by an
    /// upstream caller) cut it short, rather than this call's own timeout.
    pub fn is_deadline(&self) -> bool {
        self.deadline
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.limit.as_secs_f64() * 1000.0;
        if self.deadline {
            write!(
                f,
                "deadline exceeded: the call's budget of {ms:.0} ms ran out"
            )
        } else {
            write!(f, "request timed out after {ms:.0} ms")
        }
    }
}

impl std::error::Error for Elapsed {}
