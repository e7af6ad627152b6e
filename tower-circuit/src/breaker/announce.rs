//! Announcing state changes: the queue that keeps hooks and log lines in
//! the transitions' order, its dispatcher, and the log lines themselves.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::events::StateChange;
use super::machine::{Control, Shared};
use super::state::CircuitState;
use super::window::lock;

/// The queue that makes hooks and log lines follow the transitions' order.
///
/// A transition is queued under the control lock, so the queue's order is
/// the transitions' order. One thread at a time (`dispatching`) drains it
/// with no lock held while a hook runs: a hook may read or control the
/// breaker, and a transition it causes is queued and reported after it.
///
/// The queue is bounded by [`MAX_QUEUED_CHANGES`]: it only grows while a
/// hook is slower than the transitions (a hook that blocks, say), and then
/// the oldest unreported changes are dropped, counted and logged. The newest
/// are kept, so a gauge set from the hook still ends on the real state, and
/// the gap shows in [`StateChange::sequence`].
#[derive(Debug, Default)]
pub(super) struct Events {
    queue: VecDeque<StateChange>,
    dispatching: bool,
    /// Changes dropped unreported since the last report of a drop.
    dropped: u64,
}

/// The most state changes waiting for their hook at once.
const MAX_QUEUED_CHANGES: usize = 4096;

// === impl Shared: announcements ===

impl Shared {
    /// Queues a change for its hook and log line, numbering it. Called
    /// under the control lock, so the queue's order is the transitions'.
    pub(super) fn enqueue(&self, control: &mut Control, mut change: StateChange) {
        control.reported += 1;
        change.sequence = control.reported;
        let mut events = lock(&self.events);
        if events.queue.len() >= MAX_QUEUED_CHANGES {
            events.queue.pop_front();
            events.dropped += 1;
        }
        events.queue.push_back(change);
    }

    /// Reports queued changes in order, unless another thread (or a hook
    /// further up this thread's stack) is already doing so: it will report
    /// them. No lock is held while a hook runs.
    pub(super) fn dispatch(&self) {
        {
            let mut events = lock(&self.events);
            if events.dispatching || events.queue.is_empty() {
                return;
            }
            events.dispatching = true;
        }
        // A panicking hook must not leave the queue without a dispatcher.
        struct Dispatching<'a>(&'a Mutex<Events>);
        impl Drop for Dispatching<'_> {
            fn drop(&mut self) {
                lock(self.0).dispatching = false;
            }
        }
        let guard = Dispatching(&self.events);
        loop {
            let (next, dropped) = {
                let mut events = lock(&self.events);
                let dropped = std::mem::take(&mut events.dropped);
                match events.queue.pop_front() {
                    Some(change) => (change, dropped),
                    None => {
                        // Released under the same lock that saw the queue
                        // empty, so nothing queued meanwhile is left behind.
                        events.dispatching = false;
                        drop(events);
                        std::mem::forget(guard);
                        return;
                    }
                }
            };
            if dropped > 0 {
                tracing::warn!(
                    breaker = %self.name,
                    dropped,
                    "state-change hooks fell behind; the oldest unreported changes were dropped"
                );
            }
            self.announce(next);
        }
    }
    fn announce(&self, change: StateChange) {
        let name = &*change.name;
        let (from, to) = (change.from.as_str(), change.to.as_str());
        match change.to {
            CircuitState::Open | CircuitState::ForcedOpen => tracing::warn!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                slow_call_rate = change.slow_call_rate,
                calls = change.calls,
                open_for_secs = change.open_for.map(|d| d.as_secs_f64()),
                "circuit breaker opened"
            ),
            CircuitState::HalfOpen => tracing::info!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                calls = change.calls,
                "circuit breaker half-open, probing"
            ),
            CircuitState::Closed => tracing::info!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                failure_rate = change.failure_rate,
                calls = change.calls,
                "circuit breaker closed"
            ),
            CircuitState::Disabled => tracing::warn!(
                target: "tower_circuit::breaker",
                breaker = name,
                from,
                to,
                "circuit breaker disabled: calls are counted but never rejected"
            ),
        }
        if let Some(hook) = &self.hooks.on_state_change {
            hook(&change);
        }
    }
}
