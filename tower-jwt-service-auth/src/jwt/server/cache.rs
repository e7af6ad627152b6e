//! Verified tokens, remembered until they expire.

use std::fmt;
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
/// clock, which the layer passes in as `now`, and an expired entry found
/// is dropped.
///
/// The map is quick_cache's: sharded locks (a hit takes a shard's read
/// lock only) and, when full, eviction of the coldest entries (CLOCK-Pro)
/// rather than starting over, so a burst of new tokens does not throw out
/// the ones every caller is reusing. An expired entry nobody asks for
/// again is cold and goes first. Its default hasher is std's SipHash with
/// random keys: the keys are tokens a client chose.
pub(crate) struct TokenCache {
    /// `None` when the capacity is 0: caching is off.
    entries: Option<quick_cache::sync::Cache<String, Entry>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> Self {
        TokenCache {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// The identity `token` proved, if it is cached and not expired at `now`.
    pub(crate) fn get(&self, token: &str, now: SystemTime, leeway: Duration) -> Option<Entry> {
        let entries = self.entries.as_ref()?;
        let entry = entries.get(token)?;
        if expired(&entry.identity, now, leeway) {
            entries.remove_if(token, |e| expired(&e.identity, now, leeway));
            return None;
        }
        Some(entry)
    }

    /// Remembers a verified token; when full, the coldest entries make room.
    pub(crate) fn insert(&self, token: &str, entry: &Entry) {
        if let Some(entries) = &self.entries {
            entries.insert(token.to_owned(), entry.clone());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }
}

/// The verifier's rule: a token is refused from `exp + leeway` on.
fn expired(identity: &ServiceIdentity, now: SystemTime, leeway: Duration) -> bool {
    identity.expires_at + leeway <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_at: SystemTime) -> Entry {
        Entry {
            identity: ServiceIdentity {
                service: "order-service".to_owned(),
                permissions: Vec::new(),
                token_id: None,
                expires_at,
            },
            trimmed: false,
        }
    }

    /// A full cache evicts some entries for a new one; it does not start
    /// over. A token asked for on every round (a caller's current one)
    /// stays through a stream of one-off tokens.
    #[test]
    fn a_full_cache_evicts_cold_entries_and_keeps_the_hot_one() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = now + Duration::from_secs(300);
        let cache = TokenCache::new(100);
        cache.insert("hot", &entry(later));
        for i in 0..1_000 {
            cache.insert(&format!("one-off-{i}"), &entry(later));
            assert!(
                cache.get("hot", now, Duration::ZERO).is_some(),
                "the token in use was thrown out after {i} others"
            );
            assert!(
                cache.len() <= 110,
                "{} entries for a capacity of 100",
                cache.len()
            );
        }
        // Full: most of the capacity holds entries, not a fresh start.
        assert!(cache.len() >= 50, "only {} entries left", cache.len());
    }

    #[test]
    fn capacity_zero_caches_nothing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cache = TokenCache::new(0);
        cache.insert("t", &entry(now + Duration::from_secs(60)));
        assert_eq!(cache.len(), 0);
        assert!(cache.get("t", now, Duration::ZERO).is_none());
    }
}
