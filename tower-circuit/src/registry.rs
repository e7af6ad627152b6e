//! Every breaker of a process in one place, for health and metrics endpoints.
//!
//! ```
//! use tower_circuit::breaker::{Breaker, Config};
//! use tower_circuit::registry::Registry;
//!
//! let registry = Registry::new();
//! let users = Breaker::new("user-service", Config::default()).unwrap();
//! registry.register(&users);
//! let names: Vec<String> = registry.snapshot().into_iter().map(|m| m.name).collect();
//! assert_eq!(names, ["user-service"]);
//! ```

use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::breaker::window::lock;
use crate::breaker::{Breaker, BreakerStats};
use crate::keyed::{KeyedBreakers, Snapshots};

/// A list of breakers and keyed breaker groups. Cloning shares the list.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Arc<Mutex<Vec<Entry>>>,
}

#[derive(Clone)]
enum Entry {
    Single(Breaker),
    Keyed(Arc<dyn Snapshots>),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a breaker; adding the same breaker twice keeps one entry.
    pub fn register(&self, breaker: &Breaker) {
        let mut entries = lock(&self.entries);
        let known = entries
            .iter()
            .any(|e| matches!(e, Entry::Single(b) if b.same_as(breaker)));
        if !known {
            entries.push(Entry::Single(breaker.clone()));
        }
    }

    /// Adds a group of keyed breakers: every breaker it holds at the time
    /// of a snapshot is listed.
    pub fn register_keyed<K>(&self, breakers: &KeyedBreakers<K>)
    where
        K: Hash + Eq + Clone + fmt::Display + Send + 'static,
    {
        lock(&self.entries).push(Entry::Keyed(Arc::new(breakers.clone())));
    }

    /// The breaker named `name`, if registered.
    pub fn get(&self, name: &str) -> Option<Breaker> {
        let entries = lock(&self.entries).clone();
        entries.iter().find_map(|e| match e {
            Entry::Single(b) => (b.name() == name).then(|| b.clone()),
            Entry::Keyed(group) => group.find(name),
        })
    }

    /// A snapshot of every registered breaker, in registration order (keyed
    /// groups sorted by name).
    pub fn snapshot(&self) -> Vec<BreakerStats> {
        // Clone the list first so no breaker is read under the registry's lock.
        let entries = lock(&self.entries).clone();
        let mut all = Vec::new();
        for entry in &entries {
            match entry {
                Entry::Single(b) => all.push(b.stats()),
                Entry::Keyed(group) => all.extend(group.snapshots()),
            }
        }
        all
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("entries", &lock(&self.entries).len())
            .finish()
    }
}
