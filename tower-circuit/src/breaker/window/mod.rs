//! Sliding windows of call outcomes.
//!
//! Both windows keep running totals, so recording a call and reading the
//! rates cost the same whatever the window's size: nothing scans per-call
//! records. Each window tags its contents with the breaker's epoch (bumped
//! on every state change) and drops records from calls admitted in an
//! earlier epoch, so stale outcomes never decide a new state.

mod count;
pub(crate) use count::lock;
pub(crate) use time::shard_hint;
mod time;

pub(crate) use count::CountWindow;
pub(crate) use time::TimeWindow;

/// One finished call, as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

/// Counts over the whole window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }

    fn sub(&mut self, other: Totals) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    fn of(sample: Sample) -> Totals {
        Totals {
            calls: 1,
            failures: u64::from(sample.failure),
            slow: u64::from(sample.slow),
        }
    }

    /// Failures over calls, `0.0` for an empty window.
    pub(crate) fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// Slow calls over calls, `0.0` for an empty window.
    pub(crate) fn slow_call_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Pads a value to its own cache lines so that shards written by different
/// cores do not invalidate each other (128 bytes covers adjacent-line
/// prefetching on x86 and the line size of recent ARM cores).
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// The window a breaker was configured with.
///
/// One per breaker, inside its `Arc`, so the count window's size (its
/// parts padded onto cache lines of their own, which is the point) costs
/// nothing on the call path, and boxing it would add a pointer to chase.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum SlidingWindow {
    Count(CountWindow),
    Time(TimeWindow),
}
