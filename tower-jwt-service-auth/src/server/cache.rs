//! Verified tokens, remembered until they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::verify::ServiceIdentity;

/// A bounded map from tokens to the identities they proved.
///
/// A service receives the same 5-minute token from a caller thousands of
/// times; checking its signature once is enough (Envoy's `jwt_authn` keeps
/// such a cache too). A hit is still checked against the clock: an entry
/// serves only until its token's `exp` plus the leeway.
#[derive(Debug)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, ServiceIdentity>>,
    capacity: usize,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServiceIdentity>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The identity `token` proved, if it is cached and not expired at `now`.
    pub(crate) fn get(
        &self,
        token: &str,
        now: SystemTime,
        leeway: Duration,
    ) -> Option<ServiceIdentity> {
        let mut entries = self.lock();
        let identity = entries.get(token)?;
        if identity.expires_at + leeway <= now {
            entries.remove(token);
            return None;
        }
        Some(identity.clone())
    }

    /// Remembers a verified token. When full, expired entries go first; if
    /// none has expired, the cache starts over rather than grow.
    pub(crate) fn insert(
        &self,
        token: &str,
        identity: &ServiceIdentity,
        now: SystemTime,
        leeway: Duration,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, id| id.expires_at + leeway > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(token.to_owned(), identity.clone());
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}
