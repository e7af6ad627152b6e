//! Checking service tokens, strictly.
//!
//! jsonwebtoken used alone accepts tokens without `aud` or `iss`, any
//! `typ`, an unknown `crit`, a one-year lifetime and a 2.6 MB token. The
//! [`Verifier`] refuses all of them: every header field and registered
//! claim is checked here, and jsonwebtoken is used only for HS256
//! signatures (Ed25519 ones are checked with ed25519-dalek's
//! `verify_strict`).
//! Each way a token can be wrong is a [`Rejection`] with its HTTP status
//! and RFC 6750 error code.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Map, Value};

use crate::claims::{TOKEN_TYPE, unix_seconds};
use crate::escape::Escaped;
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
    /// The header or the claims (named) hold a member twice, at any depth.
    /// JSON leaves it to each parser which one wins, so this verifier and
    /// another reader could see different values: such a token is refused.
    DuplicateMember(&'static str),
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
    /// A valid service token from an issuer this service's permission
    /// policy ([`Verifier::grant`]) grants nothing: the caller is known, but
    /// may not call here.
    IssuerNotGranted,
}

impl Rejection {
    /// 401 for a token that does not establish who the caller is; 403 for
    /// a caller that is known but may not do this.
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::NotAService
            | Rejection::MissingPermission(_)
            | Rejection::IssuerNotGranted => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 error code: none for a missing token, then
    /// `invalid_token` or `insufficient_scope`.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Rejection::Missing => None,
            Rejection::NotAService
            | Rejection::MissingPermission(_)
            | Rejection::IssuerNotGranted => Some("insufficient_scope"),
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
            Rejection::DuplicateMember(_) => "duplicate_member",
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
            Rejection::IssuerNotGranted => "issuer_not_granted",
        }
    }
}

/// The text a token carries (its `alg`, say) is escaped and cut short:
/// this message is logged, and a newline in it would forge a log line.
impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Missing => f.write_str("a bearer token is required"),
            Rejection::SeveralHeaders => f.write_str("send exactly one Authorization header"),
            Rejection::Malformed(what) => write!(f, "malformed token: {what}"),
            Rejection::DuplicateMember(part) => {
                write!(f, "malformed token: a member appears twice in the {part}")
            }
            Rejection::TooLarge => f.write_str("the token is larger than allowed"),
            Rejection::DisallowedAlgorithm(alg) => {
                write!(f, "algorithm `{}` is not allowed", Escaped(alg))
            }
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
            Rejection::MissingPermission(p) => {
                write!(f, "the caller lacks the permission `{}`", Escaped(p))
            }
            Rejection::IssuerNotGranted => {
                f.write_str("the caller is granted no permissions by this service")
            }
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

/// Where a [`Verifier`] (and the token cache of a
/// [`VerifyLayer`](crate::server::VerifyLayer) built from it) reads the
/// time, so that tests can set it: [`SystemClock`] by default, or any
/// `Fn() -> SystemTime`.
///
/// Token times (`exp`, `iat`, `nbf`) are wall-clock seconds, so this is a
/// wall clock, unlike the tokio clock the client layer schedules with.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<F> Clock for F
where
    F: Fn() -> SystemTime + Send + Sync + 'static,
{
    fn now(&self) -> SystemTime {
        self()
    }
}

/// A shared [`Clock`], printable.
#[derive(Clone)]
struct SharedClock(Arc<dyn Clock>);

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}

/// A verified token's identity, and the permissions its issuer claimed
/// but is not granted (already taken out of the identity).
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) identity: ServiceIdentity,
    pub(crate) trimmed: Vec<String>,
}

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
///
/// # Who may do what: the receiver decides
///
/// A token's `permissions` are written by its issuer. With per-service
/// Ed25519 keys no service can mint a token *as another*, but each can
/// write any permission into its own: believed as is, a service grants
/// itself whatever it likes. [`grant`](Verifier::grant) gives the verifier
/// a per-issuer policy, and then a caller holds only the permissions it
/// both claims and is granted here:
///
/// ```
/// # use tower_jwt_service_auth::keys::{Ed25519KeyPair};
/// # use tower_jwt_service_auth::sign::Signer;
/// # use tower_jwt_service_auth::verify::{Rejection, Verifier};
/// # use tower_jwt_service_auth::keys::KeySet;
/// let pair = Ed25519KeyPair::generate();
/// let verifier = Verifier::new(
///     "order-service",
///     KeySet::new().with(pair.verifying_key("n1", "notification-service").unwrap()),
/// )
/// .grant("notification-service", ["read:orders"]);
///
/// // notification-service claims more than it is granted...
/// let token = Signer::new("notification-service", pair.signing_key("n1").unwrap())
///     .permissions(["read:orders", "write:orders"])
///     .sign("order-service")
///     .unwrap();
/// // ...and holds only the intersection.
/// let caller = verifier.verify(&token.token).unwrap();
/// assert_eq!(caller.permissions, ["read:orders"]);
/// assert_eq!(caller.require("write:orders"), Err(Rejection::MissingPermission("write:orders".into())));
/// ```
///
/// A permission claimed beyond the grant is *trimmed*, not a reason to
/// refuse the whole token: caller and receiver are deployed apart, and a
/// caller asking for a permission the receiver has not granted yet (or has
/// just revoked) should lose that permission's routes only, not every
/// call. Each trim is logged and counted
/// ([`AuthStats::permissions_trimmed`](crate::server::AuthStats)), so a
/// caller that asks for too much shows up. An issuer the policy does not
/// name at all is refused ([`Rejection::IssuerNotGranted`], 403): a policy
/// lists every caller the service serves, and a missing row is more likely
/// a mistake than a caller meant to hold nothing (grant it an empty list
/// for that).
///
/// The policy is opt-in, so a verifier whose issuers are all trusted with
/// every permission (a single token authority) needs none; with one key
/// pair per service it is what makes a compromised service unable to do
/// more than it already could. A [`VerifyLayer`](crate::server::VerifyLayer)
/// built without a policy says so in a warning.
#[derive(Debug, Clone)]
pub struct Verifier {
    audience: String,
    keys: KeySet,
    issuers: Option<HashSet<String>>,
    grants: Option<HashMap<String, HashSet<String>>>,
    leeway: Duration,
    max_lifetime: Duration,
    max_token_bytes: usize,
    clock: SharedClock,
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
            grants: None,
            leeway: Duration::from_secs(30),
            max_lifetime: Duration::from_secs(3600),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            clock: SharedClock(Arc::new(SystemClock)),
        }
    }

    /// Grants `issuer` these permissions (added to any granted before).
    /// Once anything is granted, a token holds only the permissions it
    /// claims *and* its issuer is granted, and an issuer granted nothing is
    /// refused; see [the type's docs](Verifier#who-may-do-what-the-receiver-decides).
    pub fn grant<I, S>(mut self, issuer: impl Into<String>, permissions: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.grants
            .get_or_insert_with(HashMap::new)
            .entry(issuer.into())
            .or_default()
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// Whether a permission policy is set ([`grant`](Verifier::grant)).
    pub fn has_permission_policy(&self) -> bool {
        self.grants.is_some()
    }

    /// Reads the time from `clock` instead of the system clock, for `exp`,
    /// `nbf`, `iat` and the layer's token cache alike.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = SharedClock(Arc::new(clock));
        self
    }

    /// The time now, by this verifier's [`Clock`].
    pub fn now(&self) -> SystemTime {
        self.clock.0.now()
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

    /// Verifies `token` against the current time (by its [`Clock`]).
    pub fn verify(&self, token: &str) -> Result<ServiceIdentity, Rejection> {
        self.verify_at(token, self.now())
    }

    /// Verifies `token` as if at `now`.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<ServiceIdentity, Rejection> {
        self.verify_trimming(token, now).map(|v| v.identity)
    }

    /// Verifies `token` as if at `now`, saying which claimed permissions
    /// the policy took out.
    pub(crate) fn verify_trimming(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Verified, Rejection> {
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
        let header = json_object(header_b64, "header", "the header is not base64url JSON")?;

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
        let Ok(signature_bytes) = URL_SAFE_NO_PAD.decode(signature) else {
            return Err(Rejection::Malformed(
                "the signature is not canonical base64url",
            ));
        };
        // The signature over the two first parts, exactly as received.
        let message_len = header_b64.len() + 1 + claims_b64.len();
        let message = &token.as_bytes()[..message_len];
        if !key.verifies(message, signature, &signature_bytes) {
            return Err(Rejection::BadSignature);
        }

        // The claims, each of the type the JWT spec gives it.
        let claims = json_object(claims_b64, "claims", "the claims are not base64url JSON")?;
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
        let mut permissions: Vec<String> = match claims.get("permissions") {
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
        // The receiver decides what a caller may do: the claims are only
        // what the caller asks for.
        let mut trimmed = Vec::new();
        if let Some(grants) = &self.grants {
            let granted = grants.get(iss).ok_or(Rejection::IssuerNotGranted)?;
            let (kept, dropped) = permissions.into_iter().partition(|p| granted.contains(p));
            permissions = kept;
            trimmed = dropped;
        }
        Ok(Verified {
            identity: ServiceIdentity {
                service: sub.to_owned(),
                permissions,
                token_id: jti.map(str::to_owned),
                expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            },
            trimmed,
        })
    }
}

/// A base64url JSON object, refused if any object in it (at any depth)
/// holds a member twice.
fn json_object(
    part: &str,
    name: &'static str,
    what: &'static str,
) -> Result<Map<String, Value>, Rejection> {
    use serde::de::DeserializeSeed;

    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Rejection::Malformed(what))?;
    let duplicate = std::cell::Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = UniqueMembers {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    match value {
        Ok(Value::Object(map)) => Ok(map),
        _ if duplicate.get() => Err(Rejection::DuplicateMember(name)),
        _ => Err(Rejection::Malformed(what)),
    }
}

/// Reads any JSON value as serde_json's `Value` does, except that an
/// object holding a member twice is an error (and `duplicate` is set, to
/// tell it from malformed JSON).
#[derive(Clone, Copy)]
struct UniqueMembers<'a> {
    duplicate: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::DeserializeSeed<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for UniqueMembers<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // JSON has no NaN or infinity, so `from(f64)` is never null here.
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                self.duplicate.set(true);
                return Err(serde::de::Error::custom("a member appears twice"));
            }
            let value = map.next_value_seed(self)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
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
