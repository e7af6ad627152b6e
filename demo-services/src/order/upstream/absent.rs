//! Users the order service looked for a kept copy of and found none,
//! remembered for a moment.
//!
//! While the user service is down, an order for a user it never saw is
//! refused: there is no copy to fall back on. Without this memory every
//! such order would still query the database for the copy first, so a
//! client retrying one unknown user (or many clients ordering for users
//! never seen) would keep the database busy just to be told no. With it,
//! the answer comes from memory for [`REMEMBER`] after a lookup found
//! nothing.
//!
//! Bounded both ways: at most [`CAPACITY`] users are remembered (a full
//! memory drops what has expired and otherwise remembers nothing more,
//! which costs a query, never a wrong answer), and each for [`REMEMBER`].
//! A copy kept by this process forgets the user at once, and a lookup that
//! raced with any copy being kept is not remembered ([`Lookup`]). A copy
//! kept by *another* replica sharing the database is seen at most
//! [`REMEMBER`] late; until then an order for that user is refused as if
//! no copy existed, which is the answer it would have got a moment
//! earlier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a user found without a copy is remembered as such.
pub(crate) const REMEMBER: Duration = Duration::from_secs(1);

/// How many users are remembered at most.
pub(crate) const CAPACITY: usize = 4096;

/// The users recently found without a kept copy. Cheap to clone; clones
/// share the memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct AbsentCopies {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// User id → when the memory of its absence ends.
    until: Mutex<HashMap<i64, Instant>>,
    /// Bumped whenever a copy is kept, so a lookup that overlapped one is
    /// not remembered.
    kept: AtomicU64,
    found: AtomicU64,
    missing: AtomicU64,
    remembered: AtomicU64,
}

/// A lookup of a kept copy under way; see [`AbsentCopies::lookup`].
#[derive(Debug)]
#[must_use = "say what the lookup found with `found` or `missing`"]
pub(crate) struct Lookup {
    id: i64,
    kept: u64,
}

/// What the lookups of kept copies found, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CopyLookups {
    /// A copy was found (and used).
    pub(crate) found: u64,
    /// The database was asked and had none.
    pub(crate) missing: u64,
    /// Answered from memory: no query.
    pub(crate) remembered: u64,
}

impl AbsentCopies {
    /// Whether `id` was found without a copy less than [`REMEMBER`] ago;
    /// if so, the caller answers without asking the database.
    pub(crate) fn known_absent(&self, id: i64) -> bool {
        let now = Instant::now();
        let mut until = self.lock();
        match until.get(&id) {
            Some(&end) if now < end => {
                drop(until);
                self.inner.remembered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(_) => {
                until.remove(&id);
                false
            }
            None => false,
        }
    }

    /// Starts a lookup of `id`'s copy in the database; call before the
    /// query.
    pub(crate) fn lookup(&self, id: i64) -> Lookup {
        Lookup {
            id,
            kept: self.inner.kept.load(Ordering::Acquire),
        }
    }

    /// The lookup found a copy.
    pub(crate) fn found(&self, _lookup: Lookup) {
        self.inner.found.fetch_add(1, Ordering::Relaxed);
    }

    /// The lookup found no copy: remembered, unless a copy was kept while
    /// it ran (it may have missed that copy) or the memory is full.
    pub(crate) fn missing(&self, lookup: Lookup) {
        self.inner.missing.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut until = self.lock();
        // Checked under the lock `kept` takes too, so a copy kept after
        // this check also forgets this entry.
        if self.inner.kept.load(Ordering::Acquire) != lookup.kept {
            return;
        }
        if until.len() >= CAPACITY && !until.contains_key(&lookup.id) {
            until.retain(|_, end| now < *end);
            if until.len() >= CAPACITY {
                return;
            }
        }
        until.insert(lookup.id, now + REMEMBER);
    }

    /// A copy of `id` was just kept: it is no longer absent, and lookups
    /// under way are not remembered.
    pub(crate) fn kept(&self, id: i64) {
        let mut until = self.lock();
        self.inner.kept.fetch_add(1, Ordering::AcqRel);
        until.remove(&id);
    }

    /// The counts so far.
    pub(crate) fn lookups(&self) -> CopyLookups {
        CopyLookups {
            found: self.inner.found.load(Ordering::Relaxed),
            missing: self.inner.missing.load(Ordering::Relaxed),
            remembered: self.inner.remembered.load(Ordering::Relaxed),
        }
    }

    /// How many users are remembered now (expired ones included until
    /// they are dropped).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        // The map is consistent after any panic (each operation is one
        // insert or remove), so a poisoned lock is used as is.
        self.inner
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_missing_copy_is_remembered_for_a_second() {
        let absent = AbsentCopies::default();
        assert!(!absent.known_absent(7));
        let lookup = absent.lookup(7);
        absent.missing(lookup);
        assert!(absent.known_absent(7));
        assert!(!absent.known_absent(8), "only the user looked up");
        tokio::time::advance(REMEMBER - Duration::from_millis(1)).await;
        assert!(absent.known_absent(7));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!absent.known_absent(7), "forgotten after a second");
        assert_eq!(absent.len(), 0, "and dropped");
        assert_eq!(
            absent.lookups(),
            CopyLookups {
                found: 0,
                missing: 1,
                remembered: 2
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kept_copy_forgets_the_user() {
        let absent = AbsentCopies::default();
        absent.missing(absent.lookup(7));
        absent.missing(absent.lookup(8));
        absent.kept(7);
        assert!(!absent.known_absent(7));
        assert!(absent.known_absent(8), "other users stay remembered");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_overlapped_a_kept_copy_is_not_remembered() {
        let absent = AbsentCopies::default();
        let lookup = absent.lookup(7);
        // Kept while the query ran: the query may not have seen it.
        absent.kept(7);
        absent.missing(lookup);
        assert!(!absent.known_absent(7));
        // The next lookup, started after, is remembered.
        absent.missing(absent.lookup(7));
        assert!(absent.known_absent(7));
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_is_bounded_and_makes_room_from_what_expired() {
        let absent = AbsentCopies::default();
        for id in 0..CAPACITY as i64 {
            absent.missing(absent.lookup(id));
        }
        assert_eq!(absent.len(), CAPACITY);
        // Full of live entries: one more is not remembered.
        let extra = CAPACITY as i64;
        absent.missing(absent.lookup(extra));
        assert_eq!(absent.len(), CAPACITY);
        assert!(!absent.known_absent(extra));
        // A user already remembered is refreshed even when full.
        tokio::time::advance(REMEMBER / 2).await;
        absent.missing(absent.lookup(0));
        // Once the rest has expired, a new user makes room for itself.
        tokio::time::advance(REMEMBER / 2).await;
        absent.missing(absent.lookup(extra));
        assert_eq!(absent.len(), 2, "expired entries dropped");
        assert!(absent.known_absent(extra));
        assert!(absent.known_absent(0), "the refreshed one kept");
    }
}
