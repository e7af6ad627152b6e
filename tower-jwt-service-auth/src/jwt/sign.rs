//! Minting service tokens.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;

use crate::jwt::claims::{Audience, Claims, TOKEN_TYPE, unix_seconds};
use crate::jwt::keys::SigningKey;

/// The default lifetime of a token: 5 minutes, short enough that a leaked
/// token is soon useless, long enough that the client layer signs rarely.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A token could not be signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignError(String);

impl SignError {
    pub(crate) fn new(why: String) -> Self {
        SignError(why)
    }
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot sign the token: {}", self.0)
    }
}

impl std::error::Error for SignError {}

/// A signed token and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The compact JWT, for `Authorization: Bearer`.
    pub token: String,
    /// Its claims.
    pub claims: Claims,
}

/// Mints tokens for one calling service.
///
/// ```
/// use tower_jwt_service_auth::jwt::keys::SigningKey;
/// use tower_jwt_service_auth::jwt::sign::Signer;
///
/// let key = SigningKey::hs256("2026-11", &[7; 32]).unwrap();
/// let signer = Signer::new("order-service", key).permissions(["read:users"]);
/// let token = signer.sign("user-service").unwrap();
/// assert_eq!(token.claims.sub, "order-service");
/// assert!(token.claims.aud.contains("user-service"));
/// ```
#[derive(Debug, Clone)]
pub struct Signer {
    service: String,
    key: SigningKey,
    ttl: Duration,
    permissions: Vec<String>,
}

impl Signer {
    /// A signer for `service` (the tokens' `sub` and `iss`) with `key`.
    pub fn new(service: impl Into<String>, key: SigningKey) -> Self {
        Signer {
            service: service.into(),
            key,
            ttl: DEFAULT_TTL,
            permissions: Vec::new(),
        }
    }

    /// Sets the tokens' lifetime (default 5 minutes).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the permissions the tokens grant.
    pub fn permissions<I, P>(mut self, permissions: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// The calling service's name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The tokens' lifetime.
    pub fn lifetime(&self) -> Duration {
        self.ttl
    }

    /// A token for `audience` (one target service), valid from now.
    pub fn sign(&self, audience: &str) -> Result<Token, SignError> {
        self.sign_at(Audience::One(audience.to_owned()), SystemTime::now())
    }

    /// A token for `audience`, as if signed at `now`.
    pub fn sign_at(&self, audience: Audience, now: SystemTime) -> Result<Token, SignError> {
        let iat = unix_seconds(now);
        let claims = Claims {
            sub: self.service.clone(),
            iss: self.service.clone(),
            aud: audience,
            iat,
            nbf: iat,
            exp: iat + self.ttl.as_secs(),
            jti: token_id(),
            service: true,
            permissions: self.permissions.clone(),
        };
        let header = serde_json::json!({
            "alg": self.key.alg.name(),
            "typ": TOKEN_TYPE,
            "kid": self.key.kid,
        });
        let claims_json = serde_json::to_value(&claims).map_err(|e| SignError(e.to_string()))?;
        let token = self.key.sign_raw(&header, &claims_json)?;
        Ok(Token { token, claims })
    }
}

impl SigningKey {
    /// Signs any header and claims as they are, without checking them.
    /// For tools and tests (the verifier's tests forge tokens with it);
    /// services use [`Signer`].
    pub fn sign_raw(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, SignError> {
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let message = format!("{header}.{claims}");
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &self.key, self.alg.jwt())
            .map_err(|e| SignError(e.to_string()))?;
        Ok(format!("{message}.{signature}"))
    }
}

/// 128 random bits, hex.
fn token_id() -> String {
    let bits: u128 = rand::rng().random();
    format!("{bits:032x}")
}
