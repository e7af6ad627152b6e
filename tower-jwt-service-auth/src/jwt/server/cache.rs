//! Verified tokens, remembered until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::jwt::verify::ServiceIdentity;

/// What a cached token proved: the identity, and whether the permission
/// policy took some of its claimed permissions out (counted on every use).
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) identity: ServiceIdentity,
    pub(crate) trimmed: bool,
}

/// A bounded map from tokens to the identities they proved.
///
/// A service receives the same 5-minute token from a caller thousands of
/// times; checking its signature once is enough (Envoy's `jwt_authn` keeps
/// such a cache too). A hit is still checked against the clock: an entry
/// serves only until its token's `exp` plus the leeway, by the verifier's
/// clock, which the layer passes in as `now`.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, Entry>>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity `token` proved, if it is cached and not expired at `now`.
    pub(crate) fn get(&self, token: &str, now: SystemTime, leeway: Duration) -> Option<Entry> {
        let mut entries = self.lock();
        let entry = entries.get(token)?;
        if expired(&entry.identity, now, leeway) {
            entries.remove(token);
            return None;
        }
        Some(entry.clone())
    }

    /// Remembers a verified token. When full, expired entries go first; if
    /// none has expired, the cache starts over rather than grow.
    pub(crate) fn insert(&self, token: &str, entry: &Entry, now: SystemTime, leeway: Duration) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| !expired(&e.identity, now, leeway));
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), entry.clone());
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The verifier's rule: a token is refused from `exp + leeway` on.
fn expired(identity: &ServiceIdentity, now: SystemTime, leeway: Duration) -> bool {
    identity.expires_at + leeway <= now
}
