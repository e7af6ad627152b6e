//! API keys for `--service-auth api-key`: one key per service and version,
//! from files (`api-keys --out DIR`, then `--api-keys-dir DIR`), from the
//! environment, or made for the process in `all` mode.
//!
//! A server accepts every version present of every caller's key; a client
//! sends its newest. Rotating a service's key is then: write a new version
//! (`api-keys --out DIR` again), restart the servers (they accept both),
//! restart the caller (it sends the new one), delete the old version's
//! file and restart the servers once more. Keys are never logged, and the
//! `Debug` output of [`ApiKeyRing`] names versions only.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use tower_jwt_service_auth::api_key::{ApiKeyClientLayer, ApiKeyLayer, ApiKeys};

use super::{KeyMaterialError, SERVICES, permissions_of};

/// The prefix of the environment variables holding keys:
/// `DEMO_API_KEY_<SERVICE>_V<N>`, e.g. `DEMO_API_KEY_ORDER_SERVICE_V2`.
pub const ENV_PREFIX: &str = "DEMO_API_KEY_";

/// The most versions of one service's key accepted at once: a rotation
/// needs two; more is a directory nobody cleaned.
pub const MAX_VERSIONS: usize = 4;

/// The largest key file read: a key is 64 characters.
const MAX_KEY_FILE: u64 = 1024;

/// The file holding `service`'s key version `version`:
/// `<service>.v<version>.apikey`.
pub fn key_file(service: &str, version: u32) -> String {
    format!("{service}.v{version}.apikey")
}

/// The environment variable holding `service`'s key version `version`.
pub fn env_var(service: &str, version: u32) -> String {
    format!(
        "{ENV_PREFIX}{}_V{version}",
        service.to_ascii_uppercase().replace('-', "_")
    )
}

/// Where an [`ApiKeyRing`] came from, for the log and the banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKeySource {
    /// Files in this directory.
    Dir(PathBuf),
    /// `DEMO_API_KEY_*` environment variables.
    Env,
    /// Made at start; gone when the process ends.
    Ephemeral,
}

/// Every service's API keys, by version.
#[derive(Clone)]
pub struct ApiKeyRing {
    keys: BTreeMap<&'static str, BTreeMap<u32, String>>,
    source: ApiKeySource,
}

impl fmt::Debug for ApiKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: BTreeMap<_, Vec<_>> = self
            .keys
            .iter()
            .map(|(service, keys)| (*service, keys.keys().collect()))
            .collect();
        f.debug_struct("ApiKeyRing")
            .field("source", &self.source)
            .field("versions", &versions)
            .finish()
    }
}

impl ApiKeyRing {
    /// Finds the keys: `dir`, else the environment, else (when
    /// `allow_ephemeral`) fresh keys; otherwise a clear error.
    pub fn resolve(dir: Option<&Path>, allow_ephemeral: bool) -> Result<Self, KeyMaterialError> {
        if let Some(dir) = dir {
            return ApiKeyRing::from_dir(dir);
        }
        let from_env = ApiKeyRing::from_vars(std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        }))?;
        if !from_env.keys.is_empty() {
            return Ok(from_env);
        }
        if allow_ephemeral {
            return Ok(ApiKeyRing::ephemeral());
        }
        Err(KeyMaterialError(format!(
            "no API keys: pass --api-keys-dir DIR (keys written by `demo-services api-keys \
             --out DIR`) or set {} and the like",
            env_var("order-service", 1)
        )))
    }

    /// A fresh key (version 1) for every service, in memory.
    pub fn ephemeral() -> Self {
        let mut ring = ApiKeyRing {
            keys: BTreeMap::new(),
            source: ApiKeySource::Ephemeral,
        };
        for service in SERVICES {
            ring = ring.with_key(service, 1, &new_key());
        }
        ring
    }

    /// Keys from `DEMO_API_KEY_<SERVICE>_V<N>` among `vars`; other
    /// variables are ignored, a bad value is an error naming the variable
    /// (never the value).
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, KeyMaterialError> {
        let mut ring = ApiKeyRing {
            keys: BTreeMap::new(),
            source: ApiKeySource::Env,
        };
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let found = SERVICES.iter().find_map(|service| {
                let upper = service.to_ascii_uppercase().replace('-', "_");
                let version = rest.strip_prefix(&upper)?.strip_prefix("_V")?;
                Some((*service, version))
            });
            let Some((service, version)) = found.and_then(|(s, v)| Some((s, parse_version(v)?)))
            else {
                return Err(KeyMaterialError(format!(
                    "{name}: not a key variable; expected {ENV_PREFIX}<SERVICE>_V<N> for one \
                     of {}",
                    SERVICES.join(", ")
                )));
            };
            check_key(&value).map_err(|why| KeyMaterialError(format!("{name}: {why}")))?;
            ring.insert(service, version, value.clone(), &name)?;
        }
        Ok(ring)
    }

    /// Keys from the files `api-keys` writes into `dir`
    /// (`<service>.v<N>.apikey`); other files are ignored.
    pub fn from_dir(dir: &Path) -> Result<Self, KeyMaterialError> {
        let io = |p: &Path, e: std::io::Error| KeyMaterialError(format!("{}: {e}", p.display()));
        let mut ring = ApiKeyRing {
            keys: BTreeMap::new(),
            source: ApiKeySource::Dir(dir.to_owned()),
        };
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let entry = entry.map_err(|e| io(dir, e))?;
            let name = entry.file_name();
            let Some((service, version)) = name.to_str().and_then(parse_file_name) else {
                continue;
            };
            let path = entry.path();
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(MAX_KEY_FILE + 1).read_to_string(&mut text))
                .map_err(|e| io(&path, e))?;
            if text.len() as u64 > MAX_KEY_FILE {
                return Err(KeyMaterialError(format!(
                    "{}: longer than {MAX_KEY_FILE} bytes, not a key",
                    path.display()
                )));
            }
            // An editor's trailing newline is not part of the key.
            let key = text.strip_suffix('\n').unwrap_or(&text);
            check_key(key).map_err(|why| KeyMaterialError(format!("{}: {why}", path.display())))?;
            ring.insert(
                service,
                version,
                key.to_owned(),
                &path.display().to_string(),
            )?;
        }
        if ring.keys.is_empty() {
            return Err(KeyMaterialError(format!(
                "{}: no API keys there (write them with `demo-services api-keys --out {}`)",
                dir.display(),
                dir.display()
            )));
        }
        Ok(ring)
    }

    /// Adds `key` as `service`'s version `version` (replacing one of that
    /// number): for tests, and rotations in-process.
    pub fn with_key(mut self, service: &'static str, version: u32, key: &str) -> Self {
        self.keys
            .entry(service)
            .or_default()
            .insert(version, key.to_owned());
        self
    }

    /// Drops `service`'s version `version`: the last step of a rotation.
    pub fn without_version(mut self, service: &str, version: u32) -> Self {
        if let Some(versions) = self.keys.get_mut(service) {
            versions.remove(&version);
        }
        self
    }

    fn insert(
        &mut self,
        service: &'static str,
        version: u32,
        key: String,
        origin: &str,
    ) -> Result<(), KeyMaterialError> {
        let versions = self.keys.entry(service).or_default();
        versions.insert(version, key);
        if versions.len() > MAX_VERSIONS {
            return Err(KeyMaterialError(format!(
                "{origin}: {service} has more than {MAX_VERSIONS} key versions; remove the old ones"
            )));
        }
        Ok(())
    }

    /// Where the keys came from.
    pub fn source(&self) -> &ApiKeySource {
        &self.source
    }

    /// `service`'s newest key and its version.
    pub fn newest(&self, service: &str) -> Option<(u32, &str)> {
        let (version, key) = self.keys.get(service)?.last_key_value()?;
        Some((*version, key))
    }

    /// What a server accepts: every version of every service's key.
    pub fn accepted(&self) -> ApiKeys {
        let mut keys = ApiKeys::new();
        for (service, versions) in &self.keys {
            for (version, key) in versions {
                keys = keys.with_key(*service, format!("v{version}"), key);
            }
        }
        keys
    }

    /// The server layer: every version of every caller's key accepted, and
    /// each caller granted its row of [`permissions_of`], no more.
    pub fn server_layer(&self) -> ApiKeyLayer {
        SERVICES
            .iter()
            .fold(ApiKeyLayer::new(self.accepted()), |layer, caller| {
                layer.grant(
                    *caller,
                    permissions_of(caller).unwrap_or_default().iter().copied(),
                )
            })
    }

    /// The client layer of `service`: its name and its newest key.
    pub fn client_layer(&self, service: &str) -> Result<ApiKeyClientLayer, KeyMaterialError> {
        let (_, key) = self.newest(service).ok_or_else(|| {
            KeyMaterialError(format!("no API key for {service}: it cannot call anyone"))
        })?;
        ApiKeyClientLayer::new(service, key)
            .map_err(|e| KeyMaterialError(format!("{service}: {e}")))
    }
}

/// `<service>.v<N>.apikey`, for a known service.
fn parse_file_name(name: &str) -> Option<(&'static str, u32)> {
    let stem = name.strip_suffix(".apikey")?;
    let (service, version) = stem.rsplit_once(".v")?;
    let service = SERVICES.iter().find(|s| **s == service)?;
    Some((service, parse_version(version)?))
}

/// A version number: 1 or more, decimal digits only.
fn parse_version(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok().filter(|v| *v >= 1)
}

/// Why `key` cannot be sent as an API key, if it cannot (never the key).
fn check_key(key: &str) -> Result<(), String> {
    ApiKeyClientLayer::new("check", key)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// 32 random bytes, in hex: 256 bits, as generated keys must be.
fn new_key() -> String {
    use rand::RngExt;
    use std::fmt::Write;
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes a new key version for every service into `dir` (created if
/// needed): one more than the highest there, in files readable by their
/// owner only. Existing versions stay, so servers restarted now accept
/// both, until the old files are removed.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>, KeyMaterialError> {
    let io = |p: &Path, e: std::io::Error| KeyMaterialError(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut highest: BTreeMap<&str, u32> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        if let Some((service, version)) = entry.file_name().to_str().and_then(parse_file_name) {
            let top = highest.entry(service).or_default();
            *top = (*top).max(version);
        }
    }
    let mut written = Vec::new();
    for service in SERVICES {
        let version = highest.get(service).copied().unwrap_or(0) + 1;
        let path = dir.join(key_file(service, version));
        super::write_private(&path, format!("{}\n", new_key()).as_bytes())
            .map_err(|e| io(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_names_service_and_version() {
        assert_eq!(env_var("order-service", 2), "DEMO_API_KEY_ORDER_SERVICE_V2");
        let ring = ApiKeyRing::from_vars(vars(&[
            ("DEMO_API_KEY_ORDER_SERVICE_V1", "old-key-0123456789"),
            ("DEMO_API_KEY_ORDER_SERVICE_V2", "new-key-0123456789"),
            ("DEMO_API_KEY_API_GATEWAY_V1", "gateway-key-0123456789"),
            ("PATH", "/usr/bin"),
        ]))
        .unwrap();
        assert_eq!(
            ring.newest("order-service"),
            Some((2, "new-key-0123456789"))
        );
        assert_eq!(ring.accepted().versions("order-service").count(), 2);
        assert_eq!(ring.newest("user-service"), None);
    }

    #[test]
    fn bad_env_variables_are_named_without_their_value() {
        for (name, value) in [
            ("DEMO_API_KEY_BILLING_SERVICE_V1", "secret-value-123"),
            ("DEMO_API_KEY_ORDER_SERVICE_V0", "secret-value-123"),
            ("DEMO_API_KEY_ORDER_SERVICE_Vx", "secret-value-123"),
            ("DEMO_API_KEY_ORDER_SERVICE_V1", "secret value 123\n"),
        ] {
            let e = ApiKeyRing::from_vars(vars(&[(name, value)])).unwrap_err();
            assert!(e.0.contains(name), "{e}");
            assert!(!e.0.contains("secret"), "{e}");
        }
    }

    #[test]
    fn files_are_written_0600_and_read_back_newest_last() {
        let dir = std::env::temp_dir().join(format!("api-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = generate(&dir).unwrap();
        assert_eq!(first.len(), SERVICES.len());
        let v1 = ApiKeyRing::from_dir(&dir).unwrap();
        let (version, old) = v1.newest("order-service").unwrap();
        assert_eq!(version, 1);
        assert_eq!(old.len(), 64);
        let second = generate(&dir).unwrap();
        assert!(second[0].ends_with(key_file(SERVICES[0], 2)));
        let v2 = ApiKeyRing::from_dir(&dir).unwrap();
        let (version, new) = v2.newest("order-service").unwrap();
        assert_eq!(version, 2);
        assert_ne!(new, old);
        assert!(
            v2.accepted()
                .verify("order-service", old.as_bytes())
                .is_ok()
        );
        #[cfg(unix)]
        for path in first.iter().chain(&second) {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        // Debug output never holds a key.
        assert!(!format!("{v2:?}").contains(new));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
