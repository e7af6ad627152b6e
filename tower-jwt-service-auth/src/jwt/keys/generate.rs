//! Generating Ed25519 key pairs, and writing them as PEM and JWK.
//!
//! The PEM encodings are ed25519-dalek's (its `pkcs8` and `pem` features);
//! `tests/keygen.rs` checks they match OpenSSL's byte for byte.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, EncodePrivateKey, EncodePublicKey, KeypairBytes, PublicKeyBytes,
};

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
        // ed25519-dalek reads the PKCS#8 (v1, or v2 with a public key it
        // checks against the seed); the seed is all a pair needs.
        let bytes = KeypairBytes::from_pkcs8_pem(pem).map_err(|e| {
            KeyError::InvalidKey(format!("not an Ed25519 private key in PKCS#8: {e}"))
        })?;
        ed25519_dalek::SigningKey::try_from(&bytes).map_err(|e| {
            KeyError::InvalidKey(format!("not an Ed25519 private key in PKCS#8: {e}"))
        })?;
        Ok(Ed25519KeyPair::from_seed(bytes.secret_key))
    }

    /// The private key as a PKCS#8 PEM. Keep it secret.
    ///
    /// PKCS#8 v1, the seed alone, as OpenSSL writes it (ed25519-dalek's own
    /// `SigningKey` encoding adds the public key, as v2).
    pub fn private_pem(&self) -> String {
        let bytes = KeypairBytes {
            secret_key: self.seed,
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            // Encoding 32 fixed bytes into a fixed structure cannot fail.
            .unwrap_or_default()
    }

    /// The public key as an SPKI PEM.
    pub fn public_pem(&self) -> String {
        PublicKeyBytes(self.public)
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public key in base64url, a JWK's `x`.
    pub fn public_x(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.public)
    }

    /// A JWKS entry for the public key, in the shape [`KeySet::from_jwks`](super::KeySet::from_jwks)
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
