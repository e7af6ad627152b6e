//! Keys by `kid`: one to sign with, several to verify against, for rotation.
//!
//! Two algorithms:
//! - **EdDSA** (Ed25519): a key pair per service; a verifier holds only
//!   public keys, so a compromised service cannot mint tokens for another.
//!   Each public key is bound to its owner: a token signed with it must name
//!   that owner as its issuer. The default.
//! - **HS256**: one shared secret (`SERVICE_JWT_SECRET`); simpler, but
//!   every holder can mint tokens as any service, with any permission: for
//!   development, not production.
//!
//! Keys load from PEM (files or strings), environment variables, and a
//! JWKS-style JSON document.
//!
//! Layout: this file holds the key types and their loaders; [`KeySet`] is
//! in `set.rs`, JWKS parsing in `jwks.rs`, key generation in `generate.rs`.

mod generate;
mod jwks;
mod set;

use std::fmt;
use std::path::Path;

use jsonwebtoken::{DecodingKey, EncodingKey};

pub use self::generate::Ed25519KeyPair;
pub use self::set::KeySet;

use crate::escape::Escaped;

/// The algorithms a service token may use. Anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Ed25519 signatures.
    EdDsa,
    /// HMAC-SHA256 with a shared secret.
    Hs256,
}

impl Algorithm {
    /// The name in a token's `alg` header.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
        }
    }

    /// The algorithm named exactly `name`, if allowed.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "EdDSA" => Some(Algorithm::EdDsa),
            "HS256" => Some(Algorithm::Hs256),
            _ => None,
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::Hs256 => jsonwebtoken::Algorithm::HS256,
        }
    }
}

/// The shortest HS256 secret accepted: 32 bytes, the hash's output size
/// (RFC 7518 §3.2 requires at least that).
pub const MIN_SECRET_LEN: usize = 32;

/// The length of an Ed25519 public key, in bytes (RFC 8032).
pub const ED25519_KEY_LEN: usize = 32;

/// A key that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// An HS256 secret shorter than [`MIN_SECRET_LEN`] bytes.
    SecretTooShort(usize),
    /// A PEM or JWK that is not a key of the expected kind.
    InvalidKey(String),
    /// An environment variable that is not set (or not UTF-8).
    MissingEnv(String),
    /// A file that could not be read.
    Io(String),
    /// A `kid` that is empty.
    EmptyKid,
    /// An Ed25519 public key that is not exactly 32 bytes. Such a key would
    /// otherwise be cut or fail only inside the first signature check.
    Ed25519KeyLength {
        /// The key's id.
        kid: String,
        /// Its length in bytes.
        len: usize,
    },
    /// An Ed25519 public key that is not a canonically encoded point of the
    /// curve, or a small-order ("weak") point: a weak key accepts
    /// signatures nobody made, such as `01` followed by 63 zero bytes.
    WeakEd25519Key {
        /// The key's id.
        kid: String,
    },
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::SecretTooShort(n) => write!(
                f,
                "an HS256 secret needs at least {MIN_SECRET_LEN} bytes, got {n}"
            ),
            KeyError::InvalidKey(why) => write!(f, "invalid key: {why}"),
            KeyError::MissingEnv(var) => write!(f, "environment variable {var} is not set"),
            KeyError::Io(why) => write!(f, "cannot read key file: {why}"),
            KeyError::EmptyKid => f.write_str("a key id (kid) must not be empty"),
            KeyError::Ed25519KeyLength { kid, len } => write!(
                f,
                "key {}: an Ed25519 public key is {ED25519_KEY_LEN} bytes, got {len}",
                Escaped(kid)
            ),
            KeyError::WeakEd25519Key { kid } => write!(
                f,
                "key {}: not a valid Ed25519 public key (a weak, small-order or \
                 non-canonical point)",
                Escaped(kid)
            ),
        }
    }
}

impl std::error::Error for KeyError {}

fn check_kid(kid: &str) -> Result<(), KeyError> {
    if kid.is_empty() {
        Err(KeyError::EmptyKid)
    } else {
        Ok(())
    }
}

fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_SECRET_LEN {
        Err(KeyError::SecretTooShort(secret.len()))
    } else {
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|e| KeyError::Io(format!("{}: {e}", path.display())))
}

fn env(var: &str) -> Result<String, KeyError> {
    std::env::var(var).map_err(|_| KeyError::MissingEnv(var.to_owned()))
}

/// The key a service signs its tokens with.
#[derive(Clone)]
pub struct SigningKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: EncodingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An Ed25519 private key in PKCS#8 PEM.
    pub fn ed25519_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let key = EncodingKey::from_ed_pem(pem).map_err(|e| KeyError::InvalidKey(e.to_string()))?;
        Ok(SigningKey {
            kid,
            alg: Algorithm::EdDsa,
            key,
        })
    }

    /// An Ed25519 private key from a PEM file.
    pub fn ed25519_pem_file(
        kid: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, KeyError> {
        SigningKey::ed25519_pem(kid, &read(path.as_ref())?)
    }

    /// An HS256 shared secret (at least 32 bytes).
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        check_secret(secret)?;
        Ok(SigningKey {
            kid,
            alg: Algorithm::Hs256,
            key: EncodingKey::from_secret(secret),
        })
    }

    /// An HS256 shared secret from an environment variable, e.g.
    /// `SERVICE_JWT_SECRET`.
    pub fn hs256_env(kid: impl Into<String>, var: &str) -> Result<Self, KeyError> {
        SigningKey::hs256(kid, env(var)?.as_bytes())
    }

    /// The key id tokens signed with it carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// A key tokens are verified against.
#[derive(Clone)]
pub struct VerifyingKey {
    pub(crate) kid: String,
    pub(crate) alg: Algorithm,
    pub(crate) key: Material,
    /// For per-service key pairs: the only issuer this key may sign for.
    pub(crate) owner: Option<String>,
}

/// What a signature is checked with. Ed25519 signatures are checked here
/// with ed25519-dalek's `verify_strict` (jsonwebtoken's check is the lenient
/// one, and slices the key without checking its length); HS256 ones by
/// jsonwebtoken.
#[derive(Clone)]
pub(crate) enum Material {
    /// A point checked at load: 32 bytes, canonical, not of small order.
    Ed25519(ed25519_dalek::VerifyingKey),
    Hs256(DecodingKey),
}

impl VerifyingKey {
    /// Whether `signature` (decoded from `signature_b64`) signs `message`.
    pub(crate) fn verifies(&self, message: &[u8], signature_b64: &str, signature: &[u8]) -> bool {
        match &self.key {
            Material::Ed25519(key) => ed25519_verifies(key, message, signature),
            Material::Hs256(key) => {
                jsonwebtoken::crypto::verify(signature_b64, message, key, self.alg.jwt())
                    .unwrap_or(false)
            }
        }
    }
}

/// The strict Ed25519 check: a signature of any length is just refused,
/// and one with a small-order `R` or non-canonical `S` too, so a signature
/// made without the private key cannot pass even against a weak key.
pub(crate) fn ed25519_verifies(
    key: &ed25519_dalek::VerifyingKey,
    message: &[u8],
    signature: &[u8],
) -> bool {
    match ed25519_dalek::Signature::from_slice(signature) {
        Ok(signature) => key.verify_strict(message, &signature).is_ok(),
        Err(_) => false,
    }
}

/// The key bits of an Ed25519 public key in SPKI PEM (RFC 8410), read
/// with the `spki` and `der` crates ed25519-dalek re-exports. The bits are
/// taken as they are, whatever their length, so that [`ed25519_point`]
/// reports a key of the wrong length as such (ed25519-dalek's own
/// `DecodePublicKey` says only "malformed").
fn spki_ed25519_bytes(pem: &[u8]) -> Result<Vec<u8>, KeyError> {
    use ed25519_dalek::pkcs8::spki::SubjectPublicKeyInfoRef;
    use ed25519_dalek::pkcs8::{ALGORITHM_OID, Document};

    let invalid = |why: &dyn fmt::Display| {
        KeyError::InvalidKey(format!(
            "not an Ed25519 public key in SPKI (RFC 8410): {why}"
        ))
    };
    let text = std::str::from_utf8(pem).map_err(|_| invalid(&"a PEM is ASCII text"))?;
    let (label, der) = Document::from_pem(text).map_err(|e| invalid(&e))?;
    if label != "PUBLIC KEY" {
        return Err(invalid(&format_args!("a PEM labelled {}", Escaped(label))));
    }
    let spki: SubjectPublicKeyInfoRef<'_> = der.decode_msg().map_err(|e| invalid(&e))?;
    spki.algorithm
        .assert_algorithm_oid(ALGORITHM_OID)
        .map_err(|e| invalid(&e))?;
    if spki.algorithm.parameters.is_some() {
        return Err(invalid(&"the algorithm has parameters"));
    }
    let bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| invalid(&"the key is not whole bytes"))?;
    Ok(bits.to_vec())
}

/// An Ed25519 public key from its raw bytes, refused unless it is exactly
/// 32 bytes encoding a point canonically, and that point is not of small
/// order (such a "weak" key verifies signatures nobody made).
fn ed25519_point(kid: &str, bytes: &[u8]) -> Result<ed25519_dalek::VerifyingKey, KeyError> {
    let Ok(bytes) = <[u8; ED25519_KEY_LEN]>::try_from(bytes) else {
        return Err(KeyError::Ed25519KeyLength {
            kid: kid.to_owned(),
            len: bytes.len(),
        });
    };
    let weak = || KeyError::WeakEd25519Key {
        kid: kid.to_owned(),
    };
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| weak())?;
    // Decompression reduces `y` modulo p, so a non-canonical spelling of a
    // point loads too; compressing it back tells.
    if key.is_weak() || key.to_edwards().compress().to_bytes() != bytes {
        return Err(weak());
    }
    Ok(key)
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The Ed25519 public key (SPKI PEM) of the service `owner`: tokens
    /// verified with it must have `iss == owner`.
    pub fn ed25519_pem(
        kid: impl Into<String>,
        owner: impl Into<String>,
        pem: &[u8],
    ) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        let raw = spki_ed25519_bytes(pem)?;
        let point = ed25519_point(&kid, &raw)?;
        Ok(VerifyingKey {
            kid,
            alg: Algorithm::EdDsa,
            key: Material::Ed25519(point),
            owner: Some(owner.into()),
        })
    }

    /// The same, from a PEM file.
    pub fn ed25519_pem_file(
        kid: impl Into<String>,
        owner: impl Into<String>,
        path: impl AsRef<Path>,
    ) -> Result<Self, KeyError> {
        VerifyingKey::ed25519_pem(kid, owner, &read(path.as_ref())?)
    }

    /// An HS256 shared secret (at least 32 bytes); any trusted issuer may
    /// use it.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, KeyError> {
        let kid = kid.into();
        check_kid(&kid)?;
        check_secret(secret)?;
        Ok(VerifyingKey {
            kid,
            alg: Algorithm::Hs256,
            key: Material::Hs256(DecodingKey::from_secret(secret)),
            owner: None,
        })
    }

    /// An HS256 shared secret from an environment variable.
    pub fn hs256_env(kid: impl Into<String>, var: &str) -> Result<Self, KeyError> {
        VerifyingKey::hs256(kid, env(var)?.as_bytes())
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    /// Even if a weak key got past loading, the strict check refuses the
    /// signature anyone can make for it: `R` = the identity, `S` = 0.
    #[test]
    fn the_strict_check_refuses_a_forgery_a_weak_key_would_accept() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        // `from_bytes` alone does not refuse a weak point; the loaders do.
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        assert!(weak.is_weak());
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let message = b"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJtYWxsb3J5In0";
        let signature = ed25519_dalek::Signature::from_bytes(&forged);
        // The lenient check is fooled: this is the forgery, not a typo.
        assert!(
            ed25519_dalek::Verifier::verify(&weak, message, &signature).is_ok(),
            "the lenient check accepts the forged signature"
        );
        assert!(!ed25519_verifies(&weak, message, &forged));

        // Through a `VerifyingKey` holding the weak point, too.
        let key = VerifyingKey {
            kid: "weak".to_owned(),
            alg: Algorithm::EdDsa,
            key: Material::Ed25519(weak),
            owner: Some("mallory".to_owned()),
        };
        let b64 = URL_SAFE_NO_PAD.encode(forged);
        assert!(!key.verifies(message, &b64, &forged));
    }

    #[test]
    fn the_strict_check_accepts_a_real_signature_and_refuses_other_lengths() {
        let pair = Ed25519KeyPair::from_seed([3; 32]);
        let signing = ed25519_dalek::SigningKey::from_bytes(&pair.seed);
        let key = ed25519_point("k", &pair.public).unwrap();
        let message = b"header.claims";
        let signature = ed25519_dalek::Signer::sign(&signing, message).to_bytes();
        assert!(ed25519_verifies(&key, message, &signature));
        assert!(!ed25519_verifies(&key, b"header.claimz", &signature));
        for len in [0, 1, 32, 63, 65, 128] {
            assert!(!ed25519_verifies(&key, message, &vec![0; len]));
        }
    }
}
