//! The table of a serve loop's connections: which are waiting for a request
//! head and since when, which are busy, and which to close when the cap is
//! reached.
//!
//! A connection is *waiting* from its accept until the head of its first
//! request is complete, and again from the end of each response until the
//! next head is complete; it is *busy* in between. Only waiting connections
//! are shed, oldest wait first: a flood of sockets that never send a byte
//! then pushes out its own oldest members, not the clients with requests.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

/// The connections of one serve loop, counted against its cap.
#[derive(Debug)]
pub(crate) struct Registry {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    next_seq: u64,
    /// Connections counted against the cap: open and not shed.
    counted: usize,
    entries: HashMap<u64, Entry>,
    /// The waiting connections by the order they began to wait.
    waiting: BTreeMap<u64, u64>,
}

#[derive(Debug)]
struct Entry {
    /// Since when, and in which place of `waiting`, while waiting.
    wait: Option<(u64, Instant)>,
    in_flight: u32,
    served: u64,
    shed: bool,
    /// Wakes the connection's task when its entry changes.
    changed: Arc<Notify>,
}

/// Where a connection stands, for its task to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    /// Since when it has been waiting for a request head, if it is.
    pub(crate) waiting_since: Option<Instant>,
    /// How many requests it has sent (complete heads).
    pub(crate) served: u64,
    /// Whether it was chosen to be closed to make room.
    pub(crate) shed: bool,
}

/// What admitting a new connection did.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The new connection's place, or `None` when the cap is reached and
    /// every connection is busy: the new one is to be closed.
    pub(crate) registration: Option<Registration>,
    /// How many waiting connections were shed to make room.
    pub(crate) shed: usize,
}

impl Registry {
    /// An empty table for at most `cap` connections.
    pub(crate) fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The table stays consistent at every unlock; a panic elsewhere
        // must not stop the server.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in a connection accepted now, shedding the longest-waiting
    /// connections if the cap is reached.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut inner = self.lock();
        let mut shed = 0;
        while inner.counted >= self.cap {
            if !inner.shed_oldest() {
                return Admission {
                    registration: None,
                    shed,
                };
            }
            shed += 1;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let changed = Arc::new(Notify::new());
        inner.entries.insert(
            id,
            Entry {
                wait: None,
                in_flight: 0,
                served: 0,
                shed: false,
                changed: changed.clone(),
            },
        );
        inner.start_waiting(id);
        inner.counted += 1;
        Admission {
            registration: Some(Registration {
                tracker: Tracker {
                    registry: self.clone(),
                    id,
                },
                changed,
            }),
            shed,
        }
    }

    /// Sheds the longest-waiting connection, if any (to free a descriptor
    /// when accepting fails); returns whether one was.
    pub(crate) fn shed_one(&self) -> bool {
        self.lock().shed_oldest()
    }

    /// How many connections are counted against the cap.
    #[cfg(test)]
    pub(crate) fn counted(&self) -> usize {
        self.lock().counted
    }
}

impl Inner {
    fn shed_oldest(&mut self) -> bool {
        let Some((_, id)) = self.waiting.pop_first() else {
            return false;
        };
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.wait = None;
            entry.shed = true;
            entry.changed.notify_one();
        }
        self.counted -= 1;
        true
    }

    fn start_waiting(&mut self, id: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        if let Some(entry) = self.entries.get_mut(&id)
            && !entry.shed
        {
            entry.wait = Some((seq, Instant::now()));
            self.waiting.insert(seq, id);
            entry.changed.notify_one();
        }
    }

    fn stop_waiting(&mut self, id: u64) {
        if let Some(entry) = self.entries.get_mut(&id)
            && let Some((seq, _)) = entry.wait.take()
        {
            self.waiting.remove(&seq);
            entry.changed.notify_one();
        }
    }
}

/// A connection's handle on its entry, for the service that sees its
/// requests.
#[derive(Debug, Clone)]
pub(crate) struct Tracker {
    registry: Arc<Registry>,
    id: u64,
}

impl Tracker {
    /// Notes that a complete request head arrived; the returned guard
    /// notes the end of the request (its response sent, or dropped) when
    /// it is dropped.
    pub(crate) fn begin_request(&self) -> RequestGuard {
        let mut inner = self.registry.lock();
        inner.stop_waiting(self.id);
        if let Some(entry) = inner.entries.get_mut(&self.id) {
            entry.in_flight += 1;
            entry.served += 1;
        }
        RequestGuard {
            tracker: self.clone(),
        }
    }

    /// Where the connection stands.
    pub(crate) fn status(&self) -> Status {
        let inner = self.registry.lock();
        match inner.entries.get(&self.id) {
            Some(entry) => Status {
                waiting_since: entry.wait.map(|(_, since)| since),
                served: entry.served,
                shed: entry.shed,
            },
            None => Status {
                waiting_since: None,
                served: 0,
                shed: true,
            },
        }
    }
}

/// Ends a request when dropped: the connection waits for its next head.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    tracker: Tracker,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let id = self.tracker.id;
        let mut inner = self.tracker.registry.lock();
        let idle = match inner.entries.get_mut(&id) {
            Some(entry) => {
                entry.in_flight = entry.in_flight.saturating_sub(1);
                entry.in_flight == 0
            }
            None => false,
        };
        if idle {
            inner.start_waiting(id);
        }
    }
}

/// A connection's entry, owned by its task: removed when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    tracker: Tracker,
    changed: Arc<Notify>,
}

impl Registration {
    /// The handle for the connection's service.
    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// Where the connection stands.
    pub(crate) fn status(&self) -> Status {
        self.tracker.status()
    }

    /// Completes when the entry changes (waiting or busy, or shed) after
    /// the last call; a change in between is not lost.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.tracker.id;
        let mut inner = self.tracker.registry.lock();
        if let Some(entry) = inner.entries.remove(&id) {
            if let Some((seq, _)) = entry.wait {
                inner.waiting.remove(&seq);
            }
            if !entry.shed {
                inner.counted -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_waiting_connection_is_shed() {
        let registry = Registry::new(2);
        let first = registry.admit().registration.unwrap();
        let second = registry.admit().registration.unwrap();
        let third = registry.admit();
        assert_eq!(third.shed, 1);
        assert!(first.status().shed, "the oldest is shed");
        assert!(!second.status().shed);
        assert_eq!(registry.counted(), 2, "the shed one no longer counts");
        drop(first);
        assert_eq!(registry.counted(), 2);
        drop(third);
        assert_eq!(registry.counted(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn busy_connections_are_not_shed_and_a_new_one_is_refused() {
        let registry = Registry::new(1);
        let busy = registry.admit().registration.unwrap();
        let request = busy.tracker().begin_request();
        assert_eq!(busy.status().waiting_since, None);
        let refused = registry.admit();
        assert!(refused.registration.is_none());
        assert_eq!(refused.shed, 0);
        assert!(!busy.status().shed);

        // Once its response is sent it waits again, and can be shed.
        drop(request);
        let status = busy.status();
        assert!(status.waiting_since.is_some());
        assert_eq!(status.served, 1);
        let admitted = registry.admit();
        assert_eq!(admitted.shed, 1);
        assert!(busy.status().shed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_order_of_shedding_is_the_order_of_waiting() {
        let registry = Registry::new(3);
        let a = registry.admit().registration.unwrap();
        let b = registry.admit().registration.unwrap();
        let c = registry.admit().registration.unwrap();
        // `a` sends a request and goes idle again: it now waits since later
        // than `b` and `c`.
        drop(a.tracker().begin_request());
        assert!(registry.shed_one());
        assert!(b.status().shed);
        assert!(registry.shed_one());
        assert!(c.status().shed);
        assert!(registry.shed_one());
        assert!(a.status().shed);
        assert!(!registry.shed_one(), "nothing left to shed");
        assert_eq!(registry.counted(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_wakes_the_connection_even_if_it_came_first() {
        let registry = Registry::new(1);
        let conn = registry.admit().registration.unwrap();
        let request = conn.tracker().begin_request();
        // The permit is stored: the task's next wait returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), conn.changed())
            .await
            .expect("woken");
        drop(request);
        tokio::time::timeout(std::time::Duration::from_secs(1), conn.changed())
            .await
            .expect("woken");
    }
}
