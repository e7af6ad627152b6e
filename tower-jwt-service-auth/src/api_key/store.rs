use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

use super::{ApiKeyIdentity, Rejection};

/// The API keys a server accepts: for each calling service, one or more
/// active versions, each kept only as the SHA-256 digest of the key.
///
/// ```
/// use tower_jwt_service_auth::api_key::{ApiKeys, Rejection};
///
/// let keys = ApiKeys::new()
///     .with_key("order-service", "v1", "k7Hq2-old-random-secret")
///     // A digest computed elsewhere, so the key never reaches this host.
///     .with_digest("order-service", "v2", ApiKeys::digest("Zp4xN-new-random-secret"));
///
/// let caller = keys.verify("order-service", b"Zp4xN-new-random-secret").unwrap();
/// assert_eq!(caller.key_version, "v2");
/// assert_eq!(keys.verify("order-service", b"guess"), Err(Rejection::WrongKey));
/// assert_eq!(keys.verify("user-service", b"guess"), Err(Rejection::UnknownService));
///
/// // Debug output names versions, never keys or digests.
/// assert_eq!(format!("{keys:?}"), r#"ApiKeys {"order-service": ["v1", "v2"]}"#);
/// ```
#[derive(Clone, Default)]
pub struct ApiKeys {
    // A BTreeMap so that Debug output is stable.
    services: BTreeMap<String, Vec<StoredKey>>,
}

#[derive(Clone)]
struct StoredKey {
    version: String,
    digest: [u8; 32],
}

impl ApiKeys {
    /// An empty store, which accepts no one.
    pub fn new() -> Self {
        ApiKeys::default()
    }

    /// The SHA-256 digest of `key`, as [`with_digest`](Self::with_digest)
    /// takes it: compute it where the key is made, and give the server
    /// only the digest.
    pub fn digest(key: impl AsRef<[u8]>) -> [u8; 32] {
        Sha256::digest(key.as_ref()).into()
    }

    /// Accepts `key` from `service` as its version `version`, replacing a
    /// version of that name. Only the key's digest is kept.
    ///
    /// A key that is not 1 to [`MAX_HEADER_BYTES`](super::MAX_HEADER_BYTES)
    /// visible ASCII characters can never be presented, so it never matches.
    pub fn with_key(
        self,
        service: impl Into<String>,
        version: impl Into<String>,
        key: impl AsRef<[u8]>,
    ) -> Self {
        self.with_digest(service, version, ApiKeys::digest(key))
    }

    /// Accepts from `service`, as its version `version`, the key whose
    /// SHA-256 digest is `digest` (see [`ApiKeys::digest`]), replacing a
    /// version of that name.
    pub fn with_digest(
        mut self,
        service: impl Into<String>,
        version: impl Into<String>,
        digest: [u8; 32],
    ) -> Self {
        let version = version.into();
        let versions = self.services.entry(service.into()).or_default();
        match versions.iter_mut().find(|k| k.version == version) {
            Some(stored) => stored.digest = digest,
            None => versions.push(StoredKey { version, digest }),
        }
        self
    }

    /// Stops accepting `version` of `service`'s key, the last step of a
    /// rotation. Returns whether that version was there.
    pub fn remove(&mut self, service: &str, version: &str) -> bool {
        let Some(versions) = self.services.get_mut(service) else {
            return false;
        };
        let before = versions.len();
        versions.retain(|k| k.version != version);
        let removed = versions.len() != before;
        if versions.is_empty() {
            self.services.remove(service);
        }
        removed
    }

    /// The active versions of `service`'s key, in the order they were added.
    pub fn versions(&self, service: &str) -> impl Iterator<Item = &str> + '_ {
        self.services
            .get(service)
            .into_iter()
            .flatten()
            .map(|k| k.version.as_str())
    }

    /// Checks that `key` is an active key of `service`, and which version.
    ///
    /// The presented key's digest is compared with every active version,
    /// in constant time and without stopping at the first match or miss.
    /// Both failures are refusals of the same kind to the caller (see
    /// [`Rejection`]); they differ only so that logs can tell them apart.
    pub fn verify(&self, service: &str, key: &[u8]) -> Result<ApiKeyIdentity, Rejection> {
        // Hashed before the lookup, so an unknown service costs about as
        // much as a known one.
        let presented = ApiKeys::digest(key);
        let Some(versions) = self.services.get(service) else {
            return Err(Rejection::UnknownService);
        };
        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, stored) in versions.iter().enumerate() {
            let hit = presented[..].ct_eq(&stored.digest[..]);
            index = u64::conditional_select(&index, &(i as u64), hit);
            found |= hit;
        }
        if bool::from(found) {
            Ok(ApiKeyIdentity {
                service: service.to_owned(),
                key_version: versions[index as usize].version.clone(),
            })
        } else {
            Err(Rejection::WrongKey)
        }
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeys ")?;
        f.debug_map().entries(&self.services).finish()
    }
}

/// Only the version: a digest of a weak key would invite guessing offline.
impl fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.version, f)
    }
}
