//! Events a breaker reports: state changes, rejected calls, fallbacks used.
//!
//! Hooks are plain closures stored behind an `Arc` in the breaker's shared
//! state rather than type parameters (as `tower_http::trace` does): the
//! events are rare, and keeping them out of the type lets a [`Registry`]
//! hold breakers with different hooks side by side.
//!
//! [`Registry`]: crate::registry::Registry

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::CircuitState;

/// A breaker moved from one state to another.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StateChange {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state it left.
    pub from: CircuitState,
    /// The state it entered.
    pub to: CircuitState,
    /// The calls that decided the change: the window's when leaving closed
    /// (or on a manual change), the finished probes' when leaving half-open.
    pub calls: u64,
    /// The failure rate over those calls.
    pub failure_rate: f64,
    /// The slow-call rate over those calls (a slow probe counts as failed).
    pub slow_call_rate: f64,
    /// On a move to open: how long it stays open.
    pub open_for: Option<Duration>,
    /// The change's number, from 1, counting the breaker's changes. Hooks
    /// see 1, 2, 3, ... in that order, without gaps unless hooks fell more
    /// than 4096 changes behind: then the oldest unreported ones are
    /// dropped (logged), and the numbers show the gap.
    pub sequence: u64,
}

/// A call was rejected without reaching the inner service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rejected {
    /// The breaker's name.
    pub name: Arc<str>,
    /// The state that rejected it.
    pub state: CircuitState,
    /// Time left until half-open, where known.
    pub retry_after: Option<Duration>,
}

/// A fallback answered in place of the inner service.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FallbackUsed {
    /// The breaker's name.
    pub name: Arc<str>,
    /// Whether the circuit was open (`true`) or the call failed (`false`).
    pub circuit_open: bool,
}

type Hook<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// The hooks of one breaker; cloned into each keyed breaker.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_state_change: Option<Hook<StateChange>>,
    pub(crate) on_rejected: Option<Hook<Rejected>>,
    pub(crate) on_fallback: Option<Hook<FallbackUsed>>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_state_change", &self.on_state_change.is_some())
            .field("on_rejected", &self.on_rejected.is_some())
            .field("on_fallback", &self.on_fallback.is_some())
            .finish()
    }
}
