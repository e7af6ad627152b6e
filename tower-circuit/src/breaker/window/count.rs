//! The count-based window: a ring of the last `size` outcomes.

use std::sync::Mutex;

use super::{Sample, Totals};

const FAILURE: u8 = 1;
const SLOW: u8 = 2;

/// The last `size` call outcomes.
///
/// One lock guards the ring: "the last N calls" needs a single order of
/// calls, which per-core shards cannot give. The lock is held for a few
/// instructions.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Mutex<Ring>,
}

#[derive(Debug)]
struct Ring {
    epoch: u64,
    slots: Box<[u8]>,
    len: usize,
    next: usize,
    totals: Totals,
}

impl CountWindow {
    /// An empty window of `size` calls (at least 1).
    pub(crate) fn new(size: u32, epoch: u64) -> Self {
        let size = size.max(1) as usize;
        CountWindow {
            ring: Mutex::new(Ring {
                epoch,
                slots: vec![0; size].into_boxed_slice(),
                len: 0,
                next: 0,
                totals: Totals::default(),
            }),
        }
    }

    /// Pushes a call admitted in `epoch`; returns the new totals, or `None`
    /// if the window has moved on to another epoch since.
    #[inline]
    pub(crate) fn record(&self, epoch: u64, sample: Sample) -> Option<Totals> {
        let mut ring = lock(&self.ring);
        if ring.epoch != epoch {
            return None;
        }
        let cap = ring.slots.len();
        let next = ring.next;
        if ring.len == cap {
            let evicted = decode(ring.slots[next]);
            ring.totals.sub(evicted);
        } else {
            ring.len += 1;
        }
        ring.slots[next] =
            (if sample.failure { FAILURE } else { 0 }) | (if sample.slow { SLOW } else { 0 });
        ring.totals.add(Totals::of(sample));
        ring.next = if next + 1 == cap { 0 } else { next + 1 };
        Some(ring.totals)
    }

    /// The counts over the window.
    pub(crate) fn totals(&self) -> Totals {
        lock(&self.ring).totals
    }

    /// Moves the window to `epoch`, keeping its counts: records of calls
    /// admitted earlier are dropped from now on.
    pub(crate) fn retag(&self, epoch: u64) {
        lock(&self.ring).epoch = epoch;
    }

    /// Empties the window and moves it to `epoch`.
    pub(crate) fn reset(&self, epoch: u64) {
        let mut ring = lock(&self.ring);
        ring.epoch = epoch;
        ring.len = 0;
        ring.next = 0;
        ring.totals = Totals::default();
    }
}

fn decode(bits: u8) -> Totals {
    Totals {
        calls: 1,
        failures: u64::from(bits & FAILURE != 0),
        slow: u64::from(bits & SLOW != 0),
    }
}

/// Counts stay consistent even if a panic unwound through a holder (none
/// of the code under these locks can panic), so a poisoned lock is used as is.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
