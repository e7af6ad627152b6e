//! Checking service tokens, strictly.
//!
//! jsonwebtoken used alone accepts tokens without `aud` or `iss`, any
//! `typ`, an unknown `crit`, a one-year lifetime and a 2.6 MB token. The
//! [`Verifier`] refuses all of them: every header field and registered
//! claim is checked here, and jsonwebtoken is used only for the signature.
//! Each way a token can be wrong is a [`Rejection`] with its HTTP status
//! and RFC 6750 error code.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::claims::{TOKEN_TYPE, unix_seconds};
use crate::keys::{Algorithm, KeySet};

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// No `Authorization: Bearer` token at all.
    Missing,
    /// More than one `Authorization` header.
    SeveralHeaders,
    /// The header is not `Bearer <token>`, or the token is not three
    /// base64url parts of JSON.
    Malformed(&'static str),
    /// The token is longer than the cap, checked before decoding anything.
    TooLarge,
    /// `alg` is not one this verifier allows (`none` in any casing, an
    /// algorithm from another family, or one the key does not use).
    DisallowedAlgorithm(String),
    /// No `kid`, or one the verifier does not know.
    UnknownKey,
    /// `typ` is missing or not [`TOKEN_TYPE`].
    WrongType,
    /// The header names critical extensions (`crit`); none are understood.
    UnknownCritical,
    /// The signature does not match.
    BadSignature,
    /// A registered claim is missing or of the wrong JSON type.
    ClaimType(&'static str),
    /// `exp` passed, beyond the leeway.
    Expired,
    /// `nbf` is in the future, beyond the leeway.
    NotYetValid,
    /// `iat` is in the future, beyond the leeway.
    IssuedInFuture,
    /// `exp - iat` is longer than the verifier allows.
    LifetimeTooLong,
    /// `iss` is not a trusted issuer, or not the owner of the signing key.
    WrongIssuer,
    /// `sub` is not `iss`: a service token is minted by the caller itself,
    /// and `sub` becomes [`ServiceIdentity::service`], so a key bound to
    /// one issuer must not name another caller there.
    SubjectNotIssuer,
    /// `aud` does not name this service.
    WrongAudience,
    /// A valid token, but not a service token (`service` is missing, false
    /// or not a boolean).
    NotAService,
    /// A valid service token without the permission the route needs.
    MissingPermission(String),
}

impl Rejection {
    /// 401 for a token that does not establish who the caller is; 403 for
    /// a caller that is known but may not do this.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotAService | Rejection::MissingPermission(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code: none for a missing token, then
    /// `invalid_token` or `insufficient_scope`.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Rejection::Missing => None,
            Rejection::NotAService | Rejection::MissingPermission(_) => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// The `WWW-Authenticate` header value to answer with.
    pub fn www_authenticate(&self) -> String {
        match self.error_code() {
            None => "Bearer".to_owned(),
            Some(code) => format!("Bearer error=\"{code}\""),
        }
    }

    /// The JSON body's `error`: the RFC 6750 code, or `missing_token`.
    pub fn body_error(&self) -> &'static str {
        self.error_code().unwrap_or("missing_token")
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::SeveralHeaders => "several_headers",
            Rejection::Malformed(_) => "malformed",
            Rejection::TooLarge => "too_large",
            Rejection::DisallowedAlgorithm(_) => "disallowed_alg",
            Rejection::UnknownKey => "unknown_kid",
            Rejection::WrongType => "wrong_typ",
            Rejection::UnknownCritical => "unknown_crit",
            Rejection::BadSignature => "bad_signature",
            Rejection::ClaimType(_) => "claim_type",
            Rejection::Expired => "expired",
            Rejection::NotYetValid => "not_yet_valid",
            Rejection::IssuedInFuture => "issued_in_future",
            Rejection::LifetimeTooLong => "lifetime_too_long",
            Rejection::WrongIssuer => "wrong_issuer",
            Rejection::SubjectNotIssuer => "subject_not_issuer",
            Rejection::WrongAudience => "wrong_audience",
            Rejection::NotAService => "not_a_service",
            Rejection::MissingPermission(_) => "missing_permission",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing => f.write_str("a bearer token is required"),
            Rejection::SeveralHeaders => f.write_str("send exactly one Authorization header"),
            Rejection::Malformed(what) => write!(f, "malformed token: {what}"),
            Rejection::TooLarge => f.write_str("the token is larger than allowed"),
            Rejection::DisallowedAlgorithm(alg) => write!(f, "algorithm `{alg}` is not allowed"),
            Rejection::UnknownKey => f.write_str("the token's key id is unknown"),
            Rejection::WrongType => write!(f, "the token's typ must be `{TOKEN_TYPE}`"),
            Rejection::UnknownCritical => {
                f.write_str("the token names critical extensions that are not supported")
            }
            Rejection::BadSignature => f.write_str("the token's signature is invalid"),
            Rejection::ClaimType(claim) => {
                write!(f, "claim `{claim}` is missing or of the wrong type")
            }
            Rejection::Expired => f.write_str("the token has expired"),
            Rejection::NotYetValid => f.write_str("the token is not valid yet"),
            Rejection::IssuedInFuture => f.write_str("the token was issued in the future"),
            Rejection::LifetimeTooLong => {
                f.write_str("the token's lifetime is longer than allowed")
            }
            Rejection::WrongIssuer => f.write_str("the token's issuer is not trusted"),
            Rejection::SubjectNotIssuer => f.write_str("the token's subject must be its issuer"),
            Rejection::WrongAudience => f.write_str("the token is not meant for this service"),
            Rejection::NotAService => f.write_str("the token is not a service token"),
            Rejection::MissingPermission(p) => write!(f, "the caller lacks the permission `{p}`"),
        }
    }
}

impl std::error::Error for Rejection {}

/// Who called, established from a verified token.
///
/// [`VerifyLayer`](crate::server::VerifyLayer) puts it in the request's
/// extensions; with the `axum` feature, handlers can also take it directly
/// as an extractor (`caller: ServiceIdentity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceIdentity {
    /// The calling service (`sub`).
    pub service: String,
    /// What it may do.
    pub permissions: Vec<String>,
    /// The token id (`jti`), when present.
    pub token_id: Option<String>,
    /// When the token expires.
    pub expires_at: SystemTime,
}

impl ServiceIdentity {
    /// Whether the caller holds `permission`.
    pub fn has(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// `Ok` if the caller holds `permission`, else the 403 rejection.
    pub fn require(&self, permission: &str) -> Result<(), Rejection> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(Rejection::MissingPermission(permission.to_owned()))
        }
    }
}

/// The default cap on a token's size, checked before decoding: 8 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Verifies service tokens addressed to one service.
///
/// ```
/// use tower_jwt_service_auth::keys::{KeySet, SigningKey, VerifyingKey};
/// use tower_jwt_service_auth::sign::Signer;
/// use tower_jwt_service_auth::verify::Verifier;
///
/// let secret = [7u8; 32];
/// let signer = Signer::new("order-service", SigningKey::hs256("k1", &secret).unwrap())
///     .permissions(["read:users"]);
/// let verifier = Verifier::new(
///     "user-service",
///     KeySet::new().with(VerifyingKey::hs256("k1", &secret).unwrap()),
/// )
/// .trust_issuers(["order-service"]);
///
/// let token = signer.sign("user-service").unwrap();
/// let caller = verifier.verify(&token.token).unwrap();
/// assert_eq!(caller.service, "order-service");
/// assert!(caller.has("read:users"));
/// ```
#[derive(Debug, Clone)]
pub struct Verifier {
    audience: String,
    keys: KeySet,
    issuers: Option<HashSet<String>>,
    leeway: Duration,
    max_lifetime: Duration,
    max_token_bytes: usize,
}

impl Verifier {
    /// A verifier for tokens addressed to `audience` (this service),
    /// signed with one of `keys`. Leeway 30 s, lifetime at most 1 h, tokens
    /// at most 8 KiB. Until [`trust_issuers`](Verifier::trust_issuers) is
    /// called, any issuer is accepted whose key allows it (an Ed25519 key
    /// only ever allows its owner).
    pub fn new(audience: impl Into<String>, keys: KeySet) -> Self {
        Verifier {
            audience: audience.into(),
            keys,
            issuers: None,
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
        }
    }

    /// Accepts only tokens issued by these services.
    pub fn trust_issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers = Some(issuers.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the clock leeway for `exp`, `nbf` and `iat` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets the longest lifetime (`exp - iat`) accepted (default 1 h).
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = max;
        self
    }

    /// Sets the largest token accepted (default 8 KiB).
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// The clock leeway.
    pub fn leeway_duration(&self) -> Duration {
        self.leeway
    }

    /// The service tokens must be addressed to.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The keys, to add or remove some during a rotation.
    pub fn keys_mut(&mut self) -> &mut KeySet {
        &mut self.keys
    }

    /// Verifies `token` against the current time.
    pub fn verify(&self, token: &str) -> Result<ServiceIdentity, Rejection> {
        self.verify_at(token, SystemTime::now())
    }

    /// Verifies `token` as if at `now`.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<ServiceIdentity, Rejection> {
        if token.len() > self.max_token_bytes {
            return Err(Rejection::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed(
                "a token has three dot-separated parts",
            ));
        };
        let header = json_object(header_b64, "the header is not base64url JSON")?;

        // The header, before any cryptography.
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg.as_str(),
            _ => return Err(Rejection::DisallowedAlgorithm("(none given)".to_owned())),
        };
        let Some(alg) = Algorithm::from_name(alg) else {
            return Err(Rejection::DisallowedAlgorithm(alg.to_owned()));
        };
        if header.get("typ") != Some(&Value::String(TOKEN_TYPE.to_owned())) {
            return Err(Rejection::WrongType);
        }
        if header.contains_key("crit") {
            return Err(Rejection::UnknownCritical);
        }
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(Rejection::UnknownKey);
        };
        let Some(key) = self.keys.get(kid) else {
            return Err(Rejection::UnknownKey);
        };
        if key.alg != alg {
            // An HS256 token against an EdDSA key (or the reverse): the
            // classic algorithm-confusion attack.
            return Err(Rejection::DisallowedAlgorithm(alg.name().to_owned()));
        }

        // Canonical base64url only: a lenient decoder ignores the unused
        // bits of the last character, so one signature would have several
        // spellings (and the verified-token cache several entries).
        if URL_SAFE_NO_PAD.decode(signature).is_err() {
            return Err(Rejection::Malformed(
                "the signature is not canonical base64url",
            ));
        }
        // The signature over the two first parts, exactly as received.
        let message_len = header_b64.len() + 1 + claims_b64.len();
        let message = &token.as_bytes()[..message_len];
        match jsonwebtoken::crypto::verify(signature, message, &key.key, alg.jwt()) {
            Ok(true) => {}
            Ok(false) => return Err(Rejection::BadSignature),
            Err(_) => return Err(Rejection::Malformed("the signature is not base64url")),
        }

        // The claims, each of the type the JWT spec gives it.
        let claims = json_object(claims_b64, "the claims are not base64url JSON")?;
        let exp = seconds(&claims, "exp")?.ok_or(Rejection::ClaimType("exp"))?;
        let iat = seconds(&claims, "iat")?.ok_or(Rejection::ClaimType("iat"))?;
        let nbf = seconds(&claims, "nbf")?;
        let iss = string(&claims, "iss")?.ok_or(Rejection::ClaimType("iss"))?;
        let sub = string(&claims, "sub")?.ok_or(Rejection::ClaimType("sub"))?;
        let jti = string(&claims, "jti")?;
        let aud = match claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many
                .iter()
                .map(|a| a.as_str().ok_or(Rejection::ClaimType("aud")))
                .collect::<Result<_, _>>()?,
            _ => return Err(Rejection::ClaimType("aud")),
        };

        let now = unix_seconds(now);
        let leeway = self.leeway.as_secs();
        if exp.saturating_add(leeway) <= now {
            return Err(Rejection::Expired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(Rejection::NotYetValid);
        }
        if iat > now.saturating_add(leeway) {
            return Err(Rejection::IssuedInFuture);
        }
        if exp.saturating_sub(iat) > self.max_lifetime.as_secs() {
            return Err(Rejection::LifetimeTooLong);
        }
        if key.owner.as_deref().is_some_and(|owner| owner != iss)
            || self
                .issuers
                .as_ref()
                .is_some_and(|trusted| !trusted.contains(iss))
        {
            return Err(Rejection::WrongIssuer);
        }
        if sub != iss {
            return Err(Rejection::SubjectNotIssuer);
        }
        if !aud.contains(&self.audience.as_str()) {
            return Err(Rejection::WrongAudience);
        }

        // A verified token; now, is it a service token?
        if claims.get("service") != Some(&Value::Bool(true)) {
            return Err(Rejection::NotAService);
        }
        let permissions = match claims.get("permissions") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| {
                    p.as_str()
                        .map(str::to_owned)
                        .ok_or(Rejection::ClaimType("permissions"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(Rejection::ClaimType("permissions")),
        };
        Ok(ServiceIdentity {
            service: sub.to_owned(),
            permissions,
            token_id: jti.map(str::to_owned),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }
}

fn json_object(part: &str, what: &'static str) -> Result<Map<String, Value>, Rejection> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(what))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(Rejection::Malformed(what)),
    }
}

/// A NumericDate claim: a non-negative integer number of seconds.
fn seconds(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or(Rejection::ClaimType(name)),
    }
}

fn string<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Rejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Rejection::ClaimType(name)),
    }
}
