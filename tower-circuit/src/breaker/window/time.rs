//! The time-based window: per-core shards of fixed time buckets.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::lock;
use super::{CachePadded, Sample, Totals};

/// The outcomes of the last `buckets × bucket_nanos` nanoseconds.
///
/// Time is cut into buckets of equal length counted from the breaker's
/// creation; the window holds the current bucket and the `buckets - 1`
/// before it. Each core records into its own shard, each shard on its own
/// cache lines, so concurrent calls on different cores do not contend; the
/// totals are the sum over shards, read when a decision needs them.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    bucket_nanos: u64,
    /// The breaker's origin, from which buckets are counted.
    origin: Instant,
}

#[derive(Debug)]
struct Shard {
    epoch: u64,
    buckets: Box<[Bucket]>,
    /// Absolute number of the newest bucket.
    head: u64,
    /// Where the newest bucket sits in `buckets`: `head % buckets.len()`,
    /// kept so that recording a call does not divide.
    head_index: usize,
    /// Where (in nanoseconds since the origin) the newest bucket ends.
    head_end: u64,
    /// The same moment as an `Instant`, so that a call within the newest
    /// bucket (nearly every call) is placed by comparing instants, without
    /// turning its time into nanoseconds since the origin; `None` past
    /// what an `Instant` can hold.
    head_end_at: Option<Instant>,
    totals: Totals,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Bucket {
    fn totals(self) -> Totals {
        Totals {
            calls: u64::from(self.calls),
            failures: u64::from(self.failures),
            slow: u64::from(self.slow),
        }
    }
}

impl Shard {
    /// Moves the window so that it ends at `now`, dropping buckets that left
    /// it. Returns whether any bucket boundary was crossed.
    #[inline]
    fn advance(&mut self, now: u64, bucket_nanos: u64, origin: Instant) -> bool {
        if now < self.head_end {
            return false;
        }
        let newest = now / bucket_nanos;
        let len = self.buckets.len() as u64;
        let expired = (newest - self.head).min(len);
        for step in 1..=expired {
            let index = ((self.head + step) % len) as usize;
            let old = std::mem::take(&mut self.buckets[index]);
            self.totals.sub(old.totals());
        }
        self.head = newest;
        self.head_index = (newest % len) as usize;
        self.set_head_end(
            newest.saturating_add(1).saturating_mul(bucket_nanos),
            origin,
        );
        true
    }

    fn set_head_end(&mut self, head_end: u64, origin: Instant) {
        self.head_end = head_end;
        self.head_end_at = origin.checked_add(Duration::from_nanos(head_end));
    }

    fn clear(&mut self, epoch: u64, now: u64, bucket_nanos: u64, origin: Instant) {
        self.epoch = epoch;
        self.buckets.fill(Bucket::default());
        self.totals = Totals::default();
        self.head = now / bucket_nanos;
        self.head_index = (self.head % self.buckets.len() as u64) as usize;
        self.set_head_end(
            self.head.saturating_add(1).saturating_mul(bucket_nanos),
            origin,
        );
    }
}

impl TimeWindow {
    /// An empty window of `buckets` buckets of `bucket_nanos` each, counted
    /// from `origin`, split into `shards` shards (rounded up to a power of
    /// two).
    pub(crate) fn new(
        bucket_nanos: u64,
        buckets: u32,
        shards: usize,
        epoch: u64,
        origin: Instant,
    ) -> Self {
        let bucket_nanos = bucket_nanos.max(1);
        let shards = shards.clamp(1, 64).next_power_of_two();
        let shards = (0..shards)
            .map(|_| {
                CachePadded(Mutex::new(Shard {
                    epoch,
                    buckets: vec![Bucket::default(); buckets.max(1) as usize].into_boxed_slice(),
                    head: 0,
                    head_index: 0,
                    head_end: bucket_nanos,
                    head_end_at: origin.checked_add(Duration::from_nanos(bucket_nanos)),
                    totals: Totals::default(),
                }))
            })
            .collect();
        TimeWindow {
            shards,
            bucket_nanos,
            origin,
        }
    }

    /// How many shards the window has (a power of two).
    pub(crate) fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Records a call admitted in `epoch` that finished at `now`, in shard
    /// `shard` (taken modulo the shard count).
    ///
    /// Returns `None` if the window has moved on to another epoch, else
    /// whether a bucket boundary was crossed since this shard last recorded.
    #[inline]
    pub(crate) fn record(
        &self,
        shard: usize,
        epoch: u64,
        now: Instant,
        sample: Sample,
    ) -> Option<bool> {
        let mut shard = lock(&self.shards[shard & (self.shards.len() - 1)]);
        if shard.epoch != epoch {
            return None;
        }
        // Within the newest bucket, `now < head_end_at` says the same as
        // `since_origin(now) < head_end`, for the price of a comparison.
        let within = shard.head_end_at.is_some_and(|end| now < end);
        let crossed =
            !within && shard.advance(self.since_origin(now), self.bucket_nanos, self.origin);
        let index = shard.head_index;
        let bucket = &mut shard.buckets[index];
        bucket.calls += 1;
        bucket.failures += u32::from(sample.failure);
        bucket.slow += u32::from(sample.slow);
        shard.totals.add(Totals::of(sample));
        Some(crossed)
    }

    /// Nanoseconds from the origin to `t`, saturating.
    pub(crate) fn since_origin(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.origin);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    /// The counts over the window that ends `now`.
    pub(crate) fn totals(&self, now: u64) -> Totals {
        let mut sum = Totals::default();
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.advance(now, self.bucket_nanos, self.origin);
            sum.add(shard.totals);
        }
        sum
    }

    /// Moves every shard to `epoch`, keeping the counts: records of calls
    /// admitted earlier are dropped from now on.
    pub(crate) fn retag(&self, epoch: u64) {
        for shard in self.shards.iter() {
            lock(shard).epoch = epoch;
        }
    }

    /// Empties the window, which now starts at `now`, and moves it to `epoch`.
    pub(crate) fn reset(&self, epoch: u64, now: u64) {
        for shard in self.shards.iter() {
            lock(shard).clear(epoch, now, self.bucket_nanos, self.origin);
        }
    }
}

/// The shard a thread records into: threads take consecutive numbers, so the
/// workers of a runtime land on distinct shards.
#[inline]
pub(crate) fn shard_hint() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HINT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    HINT.with(|hint| *hint)
}
