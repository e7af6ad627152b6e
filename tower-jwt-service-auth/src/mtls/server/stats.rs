use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Rejection;

/// Counts of authenticated and refused requests, by [`Rejection`], shared
/// by every clone. Read from [`PeerAuthLayer::stats`](super::PeerAuthLayer::stats).
#[derive(Debug, Clone, Default)]
pub struct PeerAuthStats {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    authenticated: AtomicU64,
    /// Indexed by `Rejection as usize`.
    rejected: [AtomicU64; Rejection::ALL.len()],
}

// `Rejection as usize` indexes `rejected` only if `ALL` lists the variants
// in declaration order.
const _: () = {
    let mut i = 0;
    while i < Rejection::ALL.len() {
        assert!(Rejection::ALL[i] as usize == i);
        i += 1;
    }
};

impl PeerAuthStats {
    /// Requests let through.
    pub fn authenticated(&self) -> u64 {
        self.counters.authenticated.load(Ordering::Relaxed)
    }

    /// Requests refused for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.counters.rejected[reason as usize].load(Ordering::Relaxed)
    }

    pub(super) fn count_authenticated(&self) {
        self.counters.authenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_rejection(&self, reason: Rejection) {
        self.counters.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}
