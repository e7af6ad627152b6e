//! Reading a JWKS-style JSON document into a [`KeySet`].

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::{Algorithm, KeyError, KeySet, Material, VerifyingKey, check_kid, ed25519_point, read};
use crate::escape::Escaped;

impl KeySet {
    /// Reads a JWKS-style document: `{"keys": [...]}` with Ed25519 keys
    /// (`{"kty": "OKP", "crv": "Ed25519", "kid", "x", "owner"}`, `x` in
    /// base64url) and HS256 secrets (`{"kty": "oct", "kid", "k"}`). `owner`
    /// is this project's member: the service the key belongs to.
    pub fn from_jwks(json: &str) -> Result<Self, KeyError> {
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Jwk>,
        }
        #[derive(Deserialize)]
        struct Jwk {
            kty: String,
            kid: String,
            crv: Option<String>,
            x: Option<String>,
            k: Option<String>,
            owner: Option<String>,
        }
        // The kid in an error is escaped: a JWKS may come from elsewhere.
        fn invalid(kid: &str, why: &dyn fmt::Display) -> KeyError {
            KeyError::InvalidKey(format!("{}: {why}", Escaped(kid)))
        }
        let doc: Doc =
            serde_json::from_str(json).map_err(|e| KeyError::InvalidKey(format!("JWKS: {e}")))?;
        let mut set = KeySet::new();
        for jwk in doc.keys {
            check_kid(&jwk.kid)?;
            let key = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("OKP", Some("Ed25519")) => {
                    let x = jwk.x.ok_or_else(|| invalid(&jwk.kid, &"no `x`"))?;
                    let owner = jwk.owner.ok_or_else(|| invalid(&jwk.kid, &"no `owner`"))?;
                    let raw = URL_SAFE_NO_PAD
                        .decode(x.trim_end_matches('='))
                        .map_err(|e| invalid(&jwk.kid, &e))?;
                    let point = ed25519_point(&jwk.kid, &raw)?;
                    VerifyingKey {
                        kid: jwk.kid,
                        alg: Algorithm::EdDsa,
                        key: Material::Ed25519(point),
                        owner: Some(owner),
                    }
                }
                ("oct", _) => {
                    let k = jwk.k.ok_or_else(|| invalid(&jwk.kid, &"no `k`"))?;
                    let secret = URL_SAFE_NO_PAD
                        .decode(k.trim_end_matches('='))
                        .map_err(|e| invalid(&jwk.kid, &e))?;
                    VerifyingKey::hs256(jwk.kid, &secret)?
                }
                (kty, crv) => {
                    let kind = format!("{kty}{}", crv.map(|c| format!("/{c}")).unwrap_or_default());
                    return Err(invalid(
                        &jwk.kid,
                        &format_args!("unsupported key type {}", Escaped(&kind)),
                    ));
                }
            };
            set.insert(key);
        }
        Ok(set)
    }

    /// Reads a JWKS-style file.
    pub fn from_jwks_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let bytes = read(path.as_ref())?;
        let text = String::from_utf8(bytes).map_err(|e| KeyError::InvalidKey(e.to_string()))?;
        KeySet::from_jwks(&text)
    }
}
