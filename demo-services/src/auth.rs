//! Who the services are, what each may do, and how they prove it to each
//! other: `--service-auth jwt|api-key|mtls` ([`ServiceAuth`]).
//!
//! - `jwt` (the default): a short-lived service token per call. Three ways
//!   to get key material, tried in this order:
//!   1. `--keys-dir DIR`: per-service Ed25519 keys as written by `keygen`
//!      (`<service>.key.pem` for the services this process signs as, and
//!      `jwks.json` with every service's public key). A service holds only
//!      its own private key, so it cannot mint tokens as another.
//!   2. `SERVICE_JWT_SECRET`: one HS256 secret shared by every service.
//!      Simple; any holder can mint tokens as anyone, so as
//!      the gateway, with all of the gateway's permissions. For development
//!      only.
//!   3. Ephemeral Ed25519 keys, generated at start, in `all` mode only: the
//!      three services share the process, so they share the keys too, and
//!      tokens die with it.
//! - `api-key`: each caller names itself in `X-Service-Name` and sends
//!   its key in `X-API-Key` ([`api_keys`]).
//! - `mtls`: the client certificate alone (`--tls-dir` required).
//!
//! In every mode the receiver gives each caller its row of
//! [`permissions_of`], never more, and over mutual TLS a token or a key is
//! accepted only from the service the client certificate names.

pub mod api_keys;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tower_jwt_service_auth::jwt::keys::{Ed25519KeyPair, KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::VerifyLayer;
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::Verifier;
use tower_jwt_service_auth::mtls::{PeerAuthLayer, PeerPolicy};

pub use self::api_keys::ApiKeyRing;

/// How the services prove who they are to each other
/// (`--service-auth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceAuth {
    /// A short-lived service JWT on every call (`Authorization: Bearer`).
    #[default]
    Jwt,
    /// `X-Service-Name` and `X-API-Key` on every call.
    ApiKey,
    /// The client certificate alone; needs `--tls-dir`.
    Mtls,
}

/// The credentials of the chosen [`ServiceAuth`]: tokens use the JWT keys
/// of [`Keys`], so only the other two carry anything.
#[derive(Debug, Clone)]
enum Method {
    Jwt,
    ApiKey(ApiKeyRing),
    Mtls(PeerPolicy),
}

/// The user service's name: token subject and audience.
pub const USER_SERVICE: &str = "user-service";
/// The order service's name.
pub const ORDER_SERVICE: &str = "order-service";
/// The notification service's name.
pub const NOTIFICATION_SERVICE: &str = "notification-service";
/// The edge caller a person uses, through the `token` subcommand.
pub const API_GATEWAY: &str = "api-gateway";

/// Every service name a token may carry.
pub const SERVICES: [&str; 4] = [
    USER_SERVICE,
    ORDER_SERVICE,
    NOTIFICATION_SERVICE,
    API_GATEWAY,
];

/// The services a token can be addressed to (`aud`): the three that
/// verify tokens.
pub const AUDIENCES: [&str; 3] = [USER_SERVICE, ORDER_SERVICE, NOTIFICATION_SERVICE];

/// The longest token lifetime (expiry less issue time) the services'
/// verifiers accept; `token --ttl` refuses more.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The environment variable holding the shared HS256 secret.
pub const SECRET_ENV: &str = "SERVICE_JWT_SECRET";

/// The permissions each caller may hold (each service's row, and the
/// gateway's for people): what its tokens claim, and, on the receiving side, the most a
/// verifier grants it (see [`Keys::verifier`]).
pub fn permissions_of(service: &str) -> Option<&'static [&'static str]> {
    Some(match service {
        USER_SERVICE => &["read:orders", "read:products"],
        ORDER_SERVICE => &["read:users", "read:products", "write:notifications"],
        NOTIFICATION_SERVICE => &["read:users"],
        API_GATEWAY => &[
            "write:orders",
            "read:orders",
            "read:users",
            "write:users",
            "read:notifications",
        ],
        _ => return None,
    })
}

/// Where the keys came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// Per-service Ed25519 keys from `--keys-dir`.
    KeysDir,
    /// The shared `SERVICE_JWT_SECRET`.
    SharedSecret,
    /// Generated at start; gone when the process ends.
    Ephemeral,
    /// None: the services do not use tokens (`--service-auth api-key` or
    /// `mtls`).
    Unused,
}

/// Key material could not be found or read.
#[derive(Debug)]
pub struct KeyMaterialError(pub String);

impl fmt::Display for KeyMaterialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyMaterialError {}

/// The credentials of one process: how its services authenticate to each
/// other ([`ServiceAuth`]), and for tokens the private keys of the
/// services it signs as and the public keys (or shared secret) it
/// verifies with.
#[derive(Clone)]
pub struct Keys {
    signing: HashMap<String, SigningKey>,
    verifying: KeySet,
    source: KeySource,
    method: Method,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field("service_auth", &self.service_auth())
            .field("source", &self.source)
            .field("signs_as", &self.signing.keys().collect::<Vec<_>>())
            .field("verifying", &self.verifying.len())
            // Versions only: the ring's Debug never shows a key.
            .field("method", &self.method)
            .finish()
    }
}

impl Keys {
    /// Finds key material: `keys_dir`, else `SERVICE_JWT_SECRET`, else
    /// (when `allow_ephemeral`) fresh keys; otherwise a clear error.
    pub fn resolve(
        keys_dir: Option<&Path>,
        allow_ephemeral: bool,
    ) -> Result<Keys, KeyMaterialError> {
        if let Some(dir) = keys_dir {
            return Keys::from_dir(dir);
        }
        if let Ok(secret) = std::env::var(SECRET_ENV) {
            return Keys::shared_secret(secret.as_bytes());
        }
        if allow_ephemeral {
            return Ok(Keys::ephemeral());
        }
        Err(KeyMaterialError(format!(
            "no key material: set {SECRET_ENV} (a shared secret of at least 32 bytes, \
             the same for every service) or pass --keys-dir DIR (keys written by \
             `demo-services keygen --out DIR`)"
        )))
    }

    /// Every service signs and verifies with one HS256 secret.
    pub fn shared_secret(secret: &[u8]) -> Result<Keys, KeyMaterialError> {
        let bad = |e| KeyMaterialError(format!("{SECRET_ENV}: {e}"));
        let verifying = KeySet::new().with(VerifyingKey::hs256("shared-1", secret).map_err(bad)?);
        let key = SigningKey::hs256("shared-1", secret).map_err(bad)?;
        let signing = SERVICES
            .iter()
            .map(|s| (s.to_string(), key.clone()))
            .collect();
        Ok(Keys {
            signing,
            verifying,
            source: KeySource::SharedSecret,
            method: Method::Jwt,
        })
    }

    /// Fresh Ed25519 keys for every service, in memory.
    pub fn ephemeral() -> Keys {
        let mut signing = HashMap::new();
        let mut verifying = KeySet::new();
        for service in SERVICES {
            let pair = Ed25519KeyPair::generate();
            let kid = format!("{service}-ephemeral");
            // Keys made from a fresh pair's own PEMs always parse.
            if let (Ok(s), Ok(v)) = (pair.signing_key(&kid), pair.verifying_key(&kid, service)) {
                signing.insert(service.to_owned(), s);
                verifying.insert(v);
            }
        }
        Keys {
            signing,
            verifying,
            source: KeySource::Ephemeral,
            method: Method::Jwt,
        }
    }

    /// Keys as `keygen` writes them: `jwks.json` (required) and whichever
    /// `<service>.key.pem` files are present.
    pub fn from_dir(dir: &Path) -> Result<Keys, KeyMaterialError> {
        let jwks_path = dir.join("jwks.json");
        let text = std::fs::read_to_string(&jwks_path).map_err(|e| {
            KeyMaterialError(format!(
                "{}: {e} (write keys with `demo-services keygen --out {}`)",
                jwks_path.display(),
                dir.display()
            ))
        })?;
        let verifying = KeySet::from_jwks(&text)
            .map_err(|e| KeyMaterialError(format!("{}: {e}", jwks_path.display())))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| KeyMaterialError(format!("{}: {e}", jwks_path.display())))?;
        let mut signing = HashMap::new();
        for service in SERVICES {
            let path = dir.join(format!("{service}.key.pem"));
            let Ok(pem) = std::fs::read_to_string(&path) else {
                continue;
            };
            let bad = |e: &dyn fmt::Display| KeyMaterialError(format!("{}: {e}", path.display()));
            let pair = Ed25519KeyPair::from_private_pem(&pem).map_err(|e| bad(&e))?;
            // The kid is the one of the JWKS entry holding this key's public half.
            let x = pair.public_x();
            let kid = doc["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|k| k["x"] == x.as_str() && k["owner"] == service)
                .and_then(|k| k["kid"].as_str())
                .ok_or_else(|| bad(&"its public key is not in jwks.json under this owner"))?;
            signing.insert(
                service.to_owned(),
                pair.signing_key(kid).map_err(|e| bad(&e))?,
            );
        }
        Ok(Keys {
            signing,
            verifying,
            source: KeySource::KeysDir,
            method: Method::Jwt,
        })
    }

    /// Services that call each other with API keys from `ring`, and no
    /// tokens.
    pub fn api_keys(ring: ApiKeyRing) -> Keys {
        Keys {
            method: Method::ApiKey(ring),
            ..Keys::without_tokens()
        }
    }

    /// Services that know their callers by client certificate alone, of
    /// `trust_domain`, each granted its row of [`permissions_of`], and use
    /// no tokens.
    pub fn mtls(trust_domain: &str) -> Result<Keys, KeyMaterialError> {
        let policy = PeerPolicy::new(trust_domain)
            .map_err(|e| KeyMaterialError(format!("trust domain: {e}")))?;
        let policy = SERVICES.iter().fold(policy, |policy, caller| {
            policy.grant(
                *caller,
                permissions_of(caller).unwrap_or_default().iter().copied(),
            )
        });
        Ok(Keys {
            method: Method::Mtls(policy),
            ..Keys::without_tokens()
        })
    }

    fn without_tokens() -> Keys {
        Keys {
            signing: HashMap::new(),
            verifying: KeySet::new(),
            source: KeySource::Unused,
            method: Method::Jwt,
        }
    }

    /// How the services authenticate to each other.
    pub fn service_auth(&self) -> ServiceAuth {
        match self.method {
            Method::Jwt => ServiceAuth::Jwt,
            Method::ApiKey(_) => ServiceAuth::ApiKey,
            Method::Mtls(_) => ServiceAuth::Mtls,
        }
    }

    /// The API keys, with `--service-auth api-key`.
    pub fn api_key_ring(&self) -> Option<&ApiKeyRing> {
        match &self.method {
            Method::ApiKey(ring) => Some(ring),
            _ => None,
        }
    }

    /// The server layer of `--service-auth mtls` (see [`Keys::mtls`]);
    /// `None` in the other modes.
    pub fn peer_auth_layer(&self) -> Option<PeerAuthLayer> {
        match &self.method {
            Method::Mtls(policy) => Some(PeerAuthLayer::new(policy.clone())),
            _ => None,
        }
    }

    /// Where the keys came from.
    pub fn source(&self) -> KeySource {
        self.source
    }

    /// A signer for `service` with its row of [`permissions_of`].
    pub fn signer(&self, service: &str) -> Result<Signer, KeyMaterialError> {
        let key = self.signing.get(service).ok_or_else(|| {
            KeyMaterialError(format!(
                "no private key for {service}: with --keys-dir, {service}.key.pem must be there"
            ))
        })?;
        let permissions = permissions_of(service).unwrap_or_default();
        Ok(Signer::new(service, key.clone()).permissions(permissions.iter().copied()))
    }

    /// The verifier of the service `audience`: trusts every known caller,
    /// and grants each one its row of [`permissions_of`] and no more. The
    /// receiver decides: a caller holding its own private key can write any
    /// permission into its token, and what it claims beyond its row is
    /// taken out (and counted as `permissions_trimmed`).
    pub fn verifier(&self, audience: &str) -> Verifier {
        SERVICES.iter().fold(
            Verifier::new(audience, self.verifying.clone())
                .trust_issuers(SERVICES)
                .max_lifetime(MAX_TOKEN_LIFETIME),
            |verifier, caller| {
                verifier.grant(
                    *caller,
                    permissions_of(caller).unwrap_or_default().iter().copied(),
                )
            },
        )
    }

    /// The server layer of the service `audience`, with a cache of verified
    /// tokens (a caller reuses its token for minutes).
    pub fn verify_layer(&self, audience: &str) -> VerifyLayer {
        VerifyLayer::with_cache(self.verifier(audience), 4096)
    }

    /// A token from `service` for `audience`, valid for `ttl`.
    pub fn token(
        &self,
        service: &str,
        audience: &str,
        permissions: Option<Vec<String>>,
        ttl: Duration,
    ) -> Result<String, KeyMaterialError> {
        let mut signer = self.signer(service)?.ttl(ttl);
        if let Some(permissions) = permissions {
            signer = signer.permissions(permissions);
        }
        signer
            .sign(audience)
            .map(|t| t.token)
            .map_err(|e| KeyMaterialError(format!("signing failed: {e}")))
    }
}

/// Writes a fresh Ed25519 key pair per service into `dir`
/// (`<service>.key.pem`, readable by its owner only, and
/// `<service>.pub.pem`) and the public key set `jwks.json`. Refuses to
/// overwrite existing keys.
pub fn keygen(dir: &Path) -> Result<Vec<PathBuf>, KeyMaterialError> {
    let io = |p: &Path, e: std::io::Error| KeyMaterialError(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let jwks_path = dir.join("jwks.json");
    if jwks_path.exists() {
        return Err(KeyMaterialError(format!(
            "{} exists; keygen does not overwrite keys (remove the directory or choose another)",
            jwks_path.display()
        )));
    }
    let mut written = Vec::new();
    let mut jwks = Vec::new();
    for service in SERVICES {
        let pair = Ed25519KeyPair::generate();
        let kid = format!("{service}-1");
        let private = dir.join(format!("{service}.key.pem"));
        write_private(&private, pair.private_pem().as_bytes()).map_err(|e| io(&private, e))?;
        let public = dir.join(format!("{service}.pub.pem"));
        std::fs::write(&public, pair.public_pem()).map_err(|e| io(&public, e))?;
        jwks.push(pair.public_jwk(&kid, service));
        written.extend([private, public]);
    }
    let doc = serde_json::to_string_pretty(&serde_json::json!({ "keys": jwks }))
        .map_err(|e| KeyMaterialError(e.to_string()))?;
    std::fs::write(&jwks_path, doc + "\n").map_err(|e| io(&jwks_path, e))?;
    written.push(jwks_path);
    Ok(written)
}

pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
