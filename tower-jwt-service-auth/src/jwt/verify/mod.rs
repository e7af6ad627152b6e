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

mod json;
mod rejection;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub use self::rejection::Rejection;

use self::json::{json_object, seconds, string};
use crate::jwt::claims::{TOKEN_TYPE, unix_seconds};
use crate::jwt::keys::{Algorithm, KeySet};

/// Who called, established from a verified token (or, by the API-key and
/// mutual TLS layers that grant permissions, from a key or a certificate).
///
/// [`VerifyLayer`](crate::jwt::server::VerifyLayer) puts it in the request's
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
    /// When the token expires. For a caller known without a token (by an
    /// API key, [`ApiKeyLayer::grant`](crate::api_key::ApiKeyLayer::grant),
    /// or by its certificate, [`PeerAuthLayer`](crate::mtls::PeerAuthLayer)),
    /// the time it was checked: such an identity holds for its request only.
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
/// [`VerifyLayer`](crate::jwt::server::VerifyLayer) built from it) reads the
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
/// use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
/// use tower_jwt_service_auth::jwt::sign::Signer;
/// use tower_jwt_service_auth::jwt::verify::Verifier;
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
/// # use tower_jwt_service_auth::jwt::keys::{Ed25519KeyPair};
/// # use tower_jwt_service_auth::jwt::sign::Signer;
/// # use tower_jwt_service_auth::jwt::verify::{Rejection, Verifier};
/// # use tower_jwt_service_auth::jwt::keys::KeySet;
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
/// ([`AuthStats::permissions_trimmed`](crate::jwt::server::AuthStats)), so a
/// caller that asks for too much shows up. An issuer the policy does not
/// name at all is refused ([`Rejection::IssuerNotGranted`], 403): a policy
/// lists every caller the service serves, and a missing row is more likely
/// a mistake than a caller meant to hold nothing (grant it an empty list
/// for that).
///
/// The policy is opt-in, so a verifier whose issuers are all trusted with
/// every permission (a single token authority) needs none; with one key
/// pair per service it is what makes a compromised service unable to do
/// more than it already could. A [`VerifyLayer`](crate::jwt::server::VerifyLayer)
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
