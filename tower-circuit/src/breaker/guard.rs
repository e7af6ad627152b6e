//! The call path's handles: the lane a call records into, and the guard
//! that records its outcome, or gives its probe slot back if dropped.

use std::sync::Arc;

use tokio::time::Instant;

use super::error::CircuitOpen;
use super::machine::Shared;
use super::window::CachePadded;
use crate::classify::Outcome;

/// What a call's response future keeps: the breaker and the shard to
/// record into.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(super) shared: Arc<Shared>,
    pub(super) shard: usize,
}

/// How a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admitted {
    /// Closed: the outcome enters the window and may open the circuit.
    Counted,
    /// Disabled: the outcome enters the window only.
    MetricsOnly,
    /// Half-open: one of the limited probes.
    Probe,
}

/// A call in flight. Finishing it records the outcome; dropping it
/// unfinished (the caller gave up) gives back a half-open probe slot
/// without recording anything, so the breaker is never stuck half-open.
#[derive(Debug)]
pub(crate) struct CallGuard {
    lane: Option<Arc<CachePadded<Lane>>>,
    epoch: u64,
    kind: Admitted,
    /// When the call started, in nanoseconds since the breaker's origin;
    /// only read with the slow-call rule on. Kept as a `u64` rather than an
    /// `Option<Instant>` to keep the response future small: it is moved on
    /// every call.
    start: u64,
}

impl CallGuard {
    /// Admits one call through `lane`, or rejects it.
    #[inline]
    pub(super) fn admit(lane: &Arc<CachePadded<Lane>>) -> Result<CallGuard, CircuitOpen> {
        let (epoch, kind) = lane.shared.admit()?;
        let start = match lane.shared.slow_call {
            Some(_) => lane.shared.since_origin(Instant::now()),
            None => 0,
        };
        Ok(CallGuard {
            lane: Some(lane.clone()),
            epoch,
            kind,
            start,
        })
    }

    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        if let Some(lane) = self.lane.take() {
            lane.shared
                .record(lane.shard, self.epoch, self.kind, self.start, outcome);
        }
    }
}

impl Drop for CallGuard {
    #[inline]
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take()
            && self.kind == Admitted::Probe
        {
            lane.shared.release_probe(self.epoch);
        }
    }
}
