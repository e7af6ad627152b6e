//! Why a token was refused, and how each refusal is answered over HTTP
//! and gRPC.

use std::fmt;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

use crate::escape::Escaped;
use crate::jwt::claims::TOKEN_TYPE;
use crate::response::{self, GrpcCode};

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
    /// and `sub` becomes [`ServiceIdentity::service`](super::ServiceIdentity::service), so a key bound to
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
    /// policy ([`Verifier::grant`](super::Verifier::grant)) grants nothing: the caller is known, but
    /// may not call here.
    IssuerNotGranted,
    /// A valid token sent over a mutual TLS connection whose client
    /// certificate names another service than the token's issuer: a token
    /// taken from one service and replayed over another's connection (see
    /// [`VerifyLayer`](crate::jwt::server::VerifyLayer#identity-binding)).
    PeerMismatch,
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

    /// The JSON body's `error`: the RFC 6750 code, `missing_token`, or
    /// `peer_mismatch` for [`Rejection::PeerMismatch`] (whose challenge
    /// still says `invalid_token`, the only RFC 6750 code that fits), so a
    /// caller can tell a token sent over the wrong connection from a bad
    /// token.
    pub fn body_error(&self) -> &'static str {
        match self {
            Rejection::PeerMismatch => "peer_mismatch",
            _ => self.error_code().unwrap_or("missing_token"),
        }
    }

    /// The response the server layers answer with: [`status`],
    /// [`www_authenticate`], and a JSON body
    /// `{"error":` [`body_error`] `,"message":` the [`Display`] text `}`.
    ///
    /// [`status`]: Rejection::status
    /// [`www_authenticate`]: Rejection::www_authenticate
    /// [`body_error`]: Rejection::body_error
    /// [`Display`]: fmt::Display
    pub fn to_response<B: From<String>>(&self) -> Response<B> {
        let mut res = response::json_error(self.status(), self.body_error(), &self.to_string());
        if let Ok(value) = HeaderValue::from_str(&self.www_authenticate()) {
            res.headers_mut().insert(WWW_AUTHENTICATE, value);
        }
        res
    }

    /// The answer to a request with `request_headers`: a trailers-only
    /// gRPC status for a gRPC call, [`to_response`](Rejection::to_response)
    /// otherwise. The gRPC message is the JSON body's message.
    pub(crate) fn respond_to<B: From<String>>(&self, request_headers: &HeaderMap) -> Response<B> {
        if !response::is_grpc(request_headers) {
            return self.to_response();
        }
        // Follows `status`: 401 is UNAUTHENTICATED, 403 PERMISSION_DENIED.
        let code = if self.status() == StatusCode::FORBIDDEN {
            GrpcCode::PermissionDenied
        } else {
            GrpcCode::Unauthenticated
        };
        response::grpc_error(code, &self.to_string())
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
            Rejection::PeerMismatch => "peer_mismatch",
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
            Rejection::PeerMismatch => {
                f.write_str("the token's issuer is not the service named by the client certificate")
            }
        }
    }
}

impl std::error::Error for Rejection {}
