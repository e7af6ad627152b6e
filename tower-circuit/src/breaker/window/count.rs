//! The count-based window: a ring of the last `size` outcomes, fed by
//! per-core batches of successes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CachePadded, Sample, Totals};

const FAILURE: u8 = 1;
const SLOW: u8 = 2;

/// `full_epoch` while the ring is not full.
const NOT_FULL: u64 = u64::MAX;

/// The most successes a core holds back before handing them to the ring.
const MAX_BATCH: u32 = 16;

/// The last `size` call outcomes.
///
/// "The last N calls" needs one order of calls, so one lock guards the
/// ring, and that lock's cache line would travel between cores on every
/// call. To keep cores apart, a success recorded while the ring is full
/// (the steady state) goes first to its core's shard, which hands its
/// successes to the ring in batches (an eighth of the window, at most
/// 16; windows under 16 calls take every call at once). Nothing a decision needs is held back:
///
/// - a success into a full ring cannot raise either rate (it replaces an
///   outcome at least as bad), so it never needs a decision;
/// - a failure or slow call, and every read of the totals, first moves
///   every shard's held successes into the ring, so the window then holds
///   every call recorded before it;
/// - until the ring is full every call goes to it at once, so the call
///   that brings the window up to `minimum_calls` decides as before.
///
/// What changes is only the order inside the ring, and only with calls
/// from several cores: successes from another core may enter up to
/// `batch - 1` places later than they finished. So the window holds the
/// last `size` calls in the order they reached it; at its old end, up to
/// `(batch - 1) × (cores - 1)` outcomes may be ones an exact order would
/// already have evicted, in place of as many newer successes. With calls
/// from one core (and with one shard), the order is exact.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: CachePadded<Mutex<Ring>>,
    /// The epoch in which the ring is full, or [`NOT_FULL`] (always, when
    /// `batch` is 1): successes of that epoch may be held back in the
    /// shards.
    full_epoch: CachePadded<AtomicU64>,
    /// Successes each core holds back; empty when `batch` is 1.
    shards: Box<[CachePadded<Mutex<Held>>]>,
    batch: u32,
}

#[derive(Debug)]
struct Ring {
    epoch: u64,
    slots: Box<[u8]>,
    len: usize,
    next: usize,
    totals: Totals,
}

/// One core's successes not yet in the ring.
#[derive(Debug, Default)]
struct Held {
    epoch: u64,
    successes: u32,
}

impl Ring {
    /// Pushes `n` outcomes `bits`; returns whether the ring is now full.
    fn push(&mut self, bits: u8, n: u32) -> bool {
        let cap = self.slots.len();
        let sample = decode(bits);
        for _ in 0..n {
            let next = self.next;
            if self.len == cap {
                let evicted = decode(self.slots[next]);
                self.totals.sub(evicted);
            } else {
                self.len += 1;
            }
            self.slots[next] = bits;
            self.totals.add(sample);
            self.next = if next + 1 == cap { 0 } else { next + 1 };
        }
        self.len == cap
    }
}

impl CountWindow {
    /// An empty window of `size` calls (at least 1), with `shards` shards
    /// to hold successes back in (rounded up to a power of two).
    pub(crate) fn new(size: u32, shards: usize, epoch: u64) -> Self {
        let size = size.max(1);
        let batch = (size / 8).clamp(1, MAX_BATCH);
        let shards = if batch > 1 {
            shards.clamp(1, 64).next_power_of_two()
        } else {
            0
        };
        CountWindow {
            ring: CachePadded(Mutex::new(Ring {
                epoch,
                slots: vec![0; size as usize].into_boxed_slice(),
                len: 0,
                next: 0,
                totals: Totals::default(),
            })),
            full_epoch: CachePadded(AtomicU64::new(NOT_FULL)),
            shards: (0..shards)
                .map(|_| {
                    CachePadded(Mutex::new(Held {
                        epoch,
                        successes: 0,
                    }))
                })
                .collect(),
            batch,
        }
    }

    /// How many successes a shard holds back at most (1: none).
    #[cfg(test)]
    pub(crate) fn batch(&self) -> u32 {
        self.batch
    }

    /// Records a call admitted in `epoch`, from shard `shard` (taken
    /// modulo the shard count).
    ///
    /// Returns the new totals when a decision may be needed, `None` when
    /// the call was dropped (the window has moved on to another epoch) or
    /// was a success held back (which cannot raise a rate).
    #[inline]
    pub(crate) fn record(&self, shard: usize, epoch: u64, sample: Sample) -> Option<Totals> {
        let success = !sample.failure && !sample.slow;
        if success && self.full_epoch.load(Ordering::Acquire) == epoch {
            self.hold(shard, epoch);
            return None;
        }
        let held = if success { 0 } else { self.take_held(epoch) };
        let mut ring = lock(&self.ring);
        if ring.epoch != epoch {
            return None;
        }
        ring.push(0, held);
        if ring.push(encode(sample), 1) && self.batch > 1 {
            self.full_epoch.store(epoch, Ordering::Release);
        }
        Some(ring.totals)
    }

    /// Holds a success back in `shard`, handing the shard's successes to
    /// the ring once it holds a batch.
    #[inline]
    fn hold(&self, shard: usize, epoch: u64) {
        let mut held = lock(&self.shards[shard & (self.shards.len() - 1)]);
        if held.epoch != epoch {
            // What it held was admitted in another epoch: the ring would
            // drop it.
            held.epoch = epoch;
            held.successes = 0;
        }
        held.successes += 1;
        if held.successes < self.batch {
            return;
        }
        held.successes = 0;
        drop(held);
        let mut ring = lock(&self.ring);
        if ring.epoch == epoch {
            ring.push(0, self.batch);
        }
    }

    /// Takes the successes every shard holds from `epoch`.
    fn take_held(&self, epoch: u64) -> u32 {
        let mut sum = 0;
        for shard in self.shards.iter() {
            let mut held = lock(shard);
            if held.epoch == epoch {
                sum += std::mem::take(&mut held.successes);
            }
        }
        sum
    }

    /// The counts over the window, with every held success handed in.
    pub(crate) fn totals(&self) -> Totals {
        let epoch = lock(&self.ring).epoch;
        let held = self.take_held(epoch);
        let mut ring = lock(&self.ring);
        if ring.epoch == epoch {
            ring.push(0, held);
        }
        ring.totals
    }

    /// Moves the window to `epoch`, keeping its counts: records of calls
    /// admitted earlier are dropped from now on.
    pub(crate) fn retag(&self, epoch: u64) {
        let mut ring = lock(&self.ring);
        ring.epoch = epoch;
        let full = if ring.len == ring.slots.len() && self.batch > 1 {
            epoch
        } else {
            NOT_FULL
        };
        self.full_epoch.store(full, Ordering::Release);
    }

    /// Empties the window and moves it to `epoch`.
    pub(crate) fn reset(&self, epoch: u64) {
        let mut ring = lock(&self.ring);
        ring.epoch = epoch;
        ring.len = 0;
        ring.next = 0;
        ring.totals = Totals::default();
        self.full_epoch.store(NOT_FULL, Ordering::Release);
    }
}

fn encode(sample: Sample) -> u8 {
    (if sample.failure { FAILURE } else { 0 }) | (if sample.slow { SLOW } else { 0 })
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

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };

    fn counts(t: Totals) -> (u64, u64) {
        (t.calls, t.failures)
    }

    #[test]
    fn small_windows_hold_nothing_back() {
        let w = CountWindow::new(15, 2, 0);
        assert_eq!(w.batch(), 1);
        for _ in 0..15 {
            assert!(w.record(0, 0, OK).is_some());
        }
        assert!(w.record(1, 0, OK).is_some(), "full, still handed in");
    }

    #[test]
    fn successes_are_held_back_only_once_the_ring_is_full() {
        let w = CountWindow::new(100, 2, 0);
        assert_eq!(w.batch(), 12);
        // Filling: every call reaches the ring and may decide.
        for i in 1..=100 {
            let t = w.record(0, 0, OK).expect("handed in while filling");
            assert_eq!(t.calls, i);
        }
        // Full: successes wait in their shard.
        assert_eq!(w.record(0, 0, OK), None);
        assert_eq!(w.record(1, 0, OK), None);
    }

    #[test]
    fn a_failure_hands_in_every_shards_successes_first() {
        let w = CountWindow::new(100, 2, 0);
        for _ in 0..50 {
            w.record(0, 0, FAIL);
        }
        for _ in 0..50 {
            w.record(0, 0, OK);
        }
        // 5 successes held on each shard (a batch is 12): they evict 10
        // of the oldest failures once handed in.
        for _ in 0..5 {
            assert_eq!(w.record(0, 0, OK), None);
            assert_eq!(w.record(1, 0, OK), None);
        }
        let t = w.record(1, 0, FAIL).unwrap();
        // 100 calls: 39 old failures, 60 successes, the new failure.
        assert_eq!(counts(t), (100, 40));
    }

    #[test]
    fn a_full_batch_goes_to_the_ring_and_reads_hand_in_the_rest() {
        let w = CountWindow::new(100, 2, 0);
        for _ in 0..100 {
            w.record(0, 0, FAIL);
        }
        for _ in 0..12 {
            w.record(0, 0, OK);
        }
        // The twelfth success handed the batch in.
        assert_eq!(counts(lock(&w.ring).totals), (100, 88));
        w.record(1, 0, OK);
        assert_eq!(counts(w.totals()), (100, 87), "a read hands in the rest");
    }

    #[test]
    fn successes_held_in_an_earlier_epoch_are_dropped() {
        let w = CountWindow::new(100, 2, 0);
        for _ in 0..100 {
            w.record(0, 0, FAIL);
        }
        w.record(0, 0, OK);
        w.retag(1);
        // Held from epoch 0, then a call of epoch 1: the held one is gone.
        let t = w.record(0, 1, FAIL).unwrap();
        assert_eq!(counts(t), (100, 100));
        // And calls of epoch 0 finishing late are dropped.
        assert_eq!(w.record(0, 0, OK), None);
        assert_eq!(w.record(0, 0, FAIL), None);
        assert_eq!(counts(w.totals()), (100, 100));
    }

    #[test]
    fn a_reset_window_fills_again_before_holding_back() {
        let w = CountWindow::new(100, 2, 0);
        for _ in 0..100 {
            w.record(0, 0, OK);
        }
        w.reset(1);
        let t = w.record(0, 1, OK).expect("not full: handed in");
        assert_eq!(counts(t), (1, 0));
    }

    #[test]
    fn cores_recording_at_once_lose_and_invent_nothing() {
        let w = std::sync::Arc::new(CountWindow::new(100, 2, 0));
        let threads: Vec<_> = (0..2)
            .map(|shard| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000u32 {
                        w.record(shard, 0, if i % 10 == 0 { FAIL } else { OK });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let t = w.totals();
        let ring = lock(&w.ring);
        let recount = ring.slots.iter().fold(Totals::default(), |mut sum, bits| {
            sum.add(decode(*bits));
            sum
        });
        assert_eq!(t, recount, "the running totals match the slots");
        assert_eq!(t.calls, 100);
        // One in ten calls fails on each core, and at most 11 successes
        // sit out of place: between 10 - 1 - 11 and 10 + 1 + 11 failures.
        assert!(t.failures <= 22, "{t:?}");
        drop(ring);
        // Once the cores are quiet, one core's calls are exact again.
        for _ in 0..100 {
            w.record(0, 0, OK);
        }
        assert_eq!(counts(w.totals()), (100, 0));
    }

    #[test]
    fn from_one_shard_the_window_is_exactly_the_last_n_calls() {
        // A fixed pseudo-random sequence against a list of every call.
        let w = CountWindow::new(64, 4, 0);
        let mut all = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..5_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let fail = (x >> 16).is_multiple_of(7);
            w.record(3, 0, if fail { FAIL } else { OK });
            all.push(fail);
            let last = &all[all.len().saturating_sub(64)..];
            let failures = last.iter().filter(|f| **f).count() as u64;
            if fail || x.is_multiple_of(5) {
                assert_eq!(counts(w.totals()), (last.len() as u64, failures));
            }
        }
    }
}
