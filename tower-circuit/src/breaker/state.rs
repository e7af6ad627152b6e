//! The breaker's states and their packing into one atomic word.

use std::fmt;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CircuitState {
    /// Calls pass and their outcomes enter the window.
    Closed,
    /// Calls fail at once with [`CircuitOpen`](super::error::CircuitOpen)
    /// until the open duration has passed.
    Open,
    /// A limited number of probes pass; their outcome closes or reopens the circuit.
    HalfOpen,
    /// Opened by [`Breaker::force_open`](super::Breaker::force_open): every
    /// call is rejected until [`Breaker::reset`](super::Breaker::reset).
    ForcedOpen,
    /// Turned off by [`Breaker::disable`](super::Breaker::disable): every
    /// call passes and is counted, and the circuit never opens.
    Disabled,
}

impl CircuitState {
    /// The state's name in snake case, as used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
            CircuitState::Disabled => "disabled",
        }
    }

    /// Whether calls are rejected in this state (half-open rejects some).
    pub fn is_open(self) -> bool {
        matches!(self, CircuitState::Open | CircuitState::ForcedOpen)
    }

    #[inline]
    pub(crate) fn to_bits(self) -> u64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::ForcedOpen => 3,
            CircuitState::Disabled => 4,
        }
    }

    #[inline]
    fn from_bits(bits: u64) -> CircuitState {
        match bits & STATE_MASK {
            0 => CircuitState::Closed,
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::ForcedOpen,
            _ => CircuitState::Disabled,
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const STATE_BITS: u32 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// A state and the epoch it began, in one `u64`: every transition bumps the
/// epoch, so a call can tell whether the state it was admitted under still
/// holds with a single comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(pub(crate) u64);

impl Word {
    #[inline]
    pub(crate) fn new(state: CircuitState, epoch: u64) -> Word {
        Word((epoch << STATE_BITS) | state.to_bits())
    }

    #[inline]
    pub(crate) fn state(self) -> CircuitState {
        CircuitState::from_bits(self.0)
    }

    #[inline]
    pub(crate) fn epoch(self) -> u64 {
        self.0 >> STATE_BITS
    }
}
