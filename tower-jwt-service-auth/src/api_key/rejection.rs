use std::fmt;

use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{HeaderMap, Response, StatusCode};

use super::{API_KEY_HEADER, MAX_HEADER_BYTES, SERVICE_NAME_HEADER};
use crate::response::{self, GrpcCode};

/// Why an API key was refused.
///
/// Every rejection is `401 Unauthorized`: none of them establishes who the
/// caller is, so each is a failed authentication. (`403 Forbidden` would
/// say "we know who you are, and you may not", which no key check can.)
/// The body's `error` is `missing_api_key` when a header is absent, so a
/// client can tell "configure a key" from "your key is wrong", and
/// `invalid_api_key` for everything else. [`UnknownService`] and
/// [`WrongKey`] answer identically, so a caller cannot probe which
/// services have keys; only the logs and [`ApiKeyStats`] tell them apart.
///
/// A gRPC call is refused `UNAUTHENTICATED` with the same message
/// (see [`ApiKey`](super::ApiKey)).
///
/// [`UnknownService`]: Rejection::UnknownService
/// [`WrongKey`]: Rejection::WrongKey
/// [`ApiKeyStats`]: super::ApiKeyStats
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// No `X-API-Key` header, or an empty one.
    MissingKey,
    /// No `X-Service-Name` header, or an empty one.
    MissingServiceName,
    /// More than one `X-API-Key` or `X-Service-Name` header.
    SeveralHeaders,
    /// A header value longer than [`MAX_HEADER_BYTES`].
    TooLarge,
    /// A header value with spaces, control characters or non-ASCII bytes.
    Malformed,
    /// No keys are configured for the claimed service.
    UnknownService,
    /// The key matches no active version of the claimed service's key.
    WrongKey,
    /// A valid key, sent over a mutual TLS connection whose client
    /// certificate names another service than [`SERVICE_NAME_HEADER`]: a
    /// key taken from one service and replayed over another's connection
    /// (see [`ApiKeyLayer`](super::ApiKeyLayer#identity-binding)).
    PeerMismatch,
}

impl Rejection {
    /// Every rejection, in a fixed order: for exporting
    /// [`ApiKeyStats`](super::ApiKeyStats) as metrics.
    pub const ALL: &'static [Rejection] = &[
        Rejection::MissingKey,
        Rejection::MissingServiceName,
        Rejection::SeveralHeaders,
        Rejection::TooLarge,
        Rejection::Malformed,
        Rejection::UnknownService,
        Rejection::WrongKey,
        Rejection::PeerMismatch,
    ];

    /// Always `401 Unauthorized`; see the type's docs for why not 403.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The JSON body's `error`: `missing_api_key`, `peer_mismatch` (a
    /// valid key over another service's connection) or `invalid_api_key`.
    pub fn body_error(&self) -> &'static str {
        match self {
            Rejection::MissingKey | Rejection::MissingServiceName => "missing_api_key",
            Rejection::PeerMismatch => "peer_mismatch",
            _ => "invalid_api_key",
        }
    }

    /// The `WWW-Authenticate` challenge: `ApiKey` when no key was sent, as
    /// RFC 6750 does for a missing bearer token, and with the error code
    /// otherwise (a 401 must always carry a challenge, RFC 9110 §15.5.2).
    pub fn www_authenticate(&self) -> HeaderValue {
        match self {
            Rejection::MissingKey | Rejection::MissingServiceName => {
                HeaderValue::from_static("ApiKey")
            }
            _ => HeaderValue::from_static("ApiKey error=\"invalid_api_key\""),
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingKey => "missing_key",
            Rejection::MissingServiceName => "missing_service_name",
            Rejection::SeveralHeaders => "several_headers",
            Rejection::TooLarge => "too_large",
            Rejection::Malformed => "malformed",
            Rejection::UnknownService => "unknown_service",
            Rejection::WrongKey => "wrong_key",
            Rejection::PeerMismatch => "peer_mismatch",
        }
    }

    /// The response [`ApiKey`](super::ApiKey) answers with: [`status`],
    /// [`www_authenticate`], and a JSON body
    /// `{"error":` [`body_error`] `,"message":` the [`Display`] text `}`.
    ///
    /// [`status`]: Rejection::status
    /// [`www_authenticate`]: Rejection::www_authenticate
    /// [`body_error`]: Rejection::body_error
    /// [`Display`]: fmt::Display
    pub fn to_response<B: From<String>>(&self) -> Response<B> {
        let mut res = response::json_error(self.status(), self.body_error(), &self.to_string());
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, self.www_authenticate());
        res
    }

    /// The answer to a request with `request_headers`: for a gRPC call,
    /// `UNAUTHENTICATED` (16) with the JSON body's message, as a
    /// trailers-only response; [`to_response`](Rejection::to_response)
    /// otherwise.
    pub(crate) fn respond_to<B: From<String>>(&self, request_headers: &HeaderMap) -> Response<B> {
        if response::is_grpc(request_headers) {
            response::grpc_error(GrpcCode::Unauthenticated, &self.to_string())
        } else {
            self.to_response()
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::MissingKey => write!(f, "an API key is required in {API_KEY_HEADER}"),
            Rejection::MissingServiceName => {
                write!(
                    f,
                    "the calling service must be named in {SERVICE_NAME_HEADER}"
                )
            }
            Rejection::SeveralHeaders => write!(
                f,
                "send exactly one {API_KEY_HEADER} and one {SERVICE_NAME_HEADER} header"
            ),
            Rejection::TooLarge => write!(
                f,
                "{API_KEY_HEADER} and {SERVICE_NAME_HEADER} may be at most {MAX_HEADER_BYTES} bytes"
            ),
            Rejection::Malformed => write!(
                f,
                "{API_KEY_HEADER} and {SERVICE_NAME_HEADER} must be visible ASCII without spaces"
            ),
            // The same words for both: whether a service has keys here is
            // not the caller's business.
            Rejection::UnknownService | Rejection::WrongKey => {
                write!(
                    f,
                    "the API key is not valid for the service named in {SERVICE_NAME_HEADER}"
                )
            }
            Rejection::PeerMismatch => write!(
                f,
                "{SERVICE_NAME_HEADER} must name the service of the client certificate"
            ),
        }
    }
}

impl std::error::Error for Rejection {}
