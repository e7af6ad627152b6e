//! Generating Ed25519 key pairs, and writing them as PEM and JWK.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{KeyError, SigningKey, VerifyingKey};

/// A freshly generated Ed25519 key pair, for `keygen` tools and for
/// ephemeral keys in tests and single-process demos.
///
/// The private key is a PKCS#8 PEM and the public key an SPKI PEM
/// (RFC 8410), the same files `openssl genpkey -algorithm ed25519` writes,
/// so they load with [`SigningKey::ed25519_pem`] and
/// [`VerifyingKey::ed25519_pem`].
///
/// ```
/// use tower_jwt_service_auth::jwt::keys::Ed25519KeyPair;
///
/// let pair = Ed25519KeyPair::generate();
/// let signing = pair.signing_key("order-1").unwrap();
/// let verifying = pair.verifying_key("order-1", "order-service").unwrap();
/// assert_eq!(signing.kid(), verifying.kid());
/// assert!(pair.private_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
/// ```
#[derive(Clone)]
pub struct Ed25519KeyPair {
    pub(super) seed: [u8; 32],
    pub(super) public: [u8; 32],
}

impl fmt::Debug for Ed25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ed25519KeyPair")
            .field("public", &self.public_x())
            .finish_non_exhaustive()
    }
}

/// DER prefixes from RFC 8410: PKCS#8 v1 `PrivateKeyInfo` around a 32-byte
/// seed, and `SubjectPublicKeyInfo` around a 32-byte public key, both with
/// the id-Ed25519 OID (1.3.101.112).
const PKCS8_ED25519_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl Ed25519KeyPair {
    /// A new key pair from the thread-local CSPRNG (seeded by the OS).
    pub fn generate() -> Self {
        use rand::RngExt;
        let seed: [u8; 32] = rand::rng().random();
        Ed25519KeyPair::from_seed(seed)
    }

    /// The key pair of a 32-byte seed (the private key proper).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        Ed25519KeyPair { seed, public }
    }

    /// The key pair of an Ed25519 private key in PKCS#8 PEM, as
    /// [`private_pem`](Ed25519KeyPair::private_pem) or
    /// `openssl genpkey -algorithm ed25519` writes it.
    pub fn from_private_pem(pem: &str) -> Result<Self, KeyError> {
        use base64::engine::general_purpose::STANDARD;
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("-----"))
            .collect();
        let der = STANDARD
            .decode(body)
            .map_err(|e| KeyError::InvalidKey(format!("PEM: {e}")))?;
        let seed = der
            .strip_prefix(&PKCS8_ED25519_PREFIX[..])
            .and_then(|seed| <[u8; 32]>::try_from(seed).ok())
            .ok_or_else(|| {
                KeyError::InvalidKey("not an Ed25519 private key in PKCS#8".to_owned())
            })?;
        Ok(Ed25519KeyPair::from_seed(seed))
    }

    /// The private key as a PKCS#8 PEM. Keep it secret.
    pub fn private_pem(&self) -> String {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        pem("PRIVATE KEY", &der)
    }

    /// The public key as an SPKI PEM.
    pub fn public_pem(&self) -> String {
        let mut der = SPKI_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.public);
        pem("PUBLIC KEY", &der)
    }

    /// The public key in base64url, a JWK's `x`.
    pub fn public_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// A JWKS entry for the public key, in the shape [`KeySet::from_jwks`]
    /// reads: `{"kty": "OKP", "crv": "Ed25519", "kid", "x", "owner"}`.
    pub fn public_jwk(&self, kid: &str, owner: &str) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": kid,
            "x": self.public_x(),
            "owner": owner,
        })
    }

    /// The key to sign with.
    pub fn signing_key(&self, kid: impl Into<String>) -> Result<SigningKey, KeyError> {
        SigningKey::ed25519_pem(kid, self.private_pem().as_bytes())
    }

    /// The key to verify with, bound to the service `owner`.
    pub fn verifying_key(
        &self,
        kid: impl Into<String>,
        owner: impl Into<String>,
    ) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::ed25519_pem(kid, owner, self.public_pem().as_bytes())
    }
}

/// The DER inside a PEM with this `label` (RFC 7468), whitespace ignored.
pub(super) fn pem_der(pem: &[u8], label: &str) -> Result<Vec<u8>, KeyError> {
    use base64::engine::general_purpose::STANDARD;
    let text = std::str::from_utf8(pem)
        .map_err(|_| KeyError::InvalidKey("a PEM is ASCII text".to_owned()))?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let body = text
        .split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(body, _)| body)
        .ok_or_else(|| KeyError::InvalidKey(format!("not a PEM `{label}`")))?;
    let body: String = body.split_ascii_whitespace().collect();
    STANDARD
        .decode(body)
        .map_err(|e| KeyError::InvalidKey(format!("PEM: {e}")))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    // RFC 7468: lines of 64 characters.
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
