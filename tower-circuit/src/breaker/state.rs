//! The breaker's states and their packing into one atomic word.

use std::fmt;

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum State {
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

impl State {
    /// The state's name in snake case, as used in logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
        }
    }

    /// Whether calls are rejected in this state (half-open rejects some).
    pub fn is_open(self) -> bool {
        matches!(self, State::Open | State::ForcedOpen)
    }

    pub(crate) fn to_bits(self) -> u64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::ForcedOpen => 3,
            State::Disabled => 4,
        }
    }

    fn from_bits(bits: u64) -> State {
        match bits & STATE_MASK {
            0 => State::Closed,
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            _ => State::Disabled,
        }
    }
}

impl fmt::Display for State {
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
    pub(crate) fn new(state: State, epoch: u64) -> Word {
        Word((epoch << STATE_BITS) | state.to_bits())
    }

    pub(crate) fn state(self) -> State {
        State::from_bits(self.0)
    }

    pub(crate) fn epoch(self) -> u64 {
        self.0 >> STATE_BITS
    }
}
