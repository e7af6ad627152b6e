use std::fmt;

use http::{HeaderMap, Response, StatusCode};

use crate::response::{self, GrpcCode};

/// Why [`PeerAuthLayer`](super::PeerAuthLayer) refused a caller.
///
/// Every refusal is `401 Unauthorized`: none of them establishes a caller
/// this service knows. The JSON body's `error` is
/// `missing_client_certificate`, `wrong_trust_domain` or `unknown_peer`
/// ([`body_error`](Rejection::body_error)); a gRPC call is refused
/// `UNAUTHENTICATED` with the same message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// The request carries no [`PeerIdentity`](crate::mtls::PeerIdentity):
    /// it did not come over a connection with a verified client
    /// certificate.
    MissingPeer,
    /// The certificate's SPIFFE ID is of another trust domain.
    WrongTrustDomain,
    /// The certificate names a service the policy does not (or its path is
    /// not one service name).
    UnknownPeer,
}

impl Rejection {
    /// Every rejection, in a fixed order: for exporting
    /// [`PeerAuthStats`](super::PeerAuthStats) as metrics.
    pub const ALL: &'static [Rejection] = &[
        Rejection::MissingPeer,
        Rejection::WrongTrustDomain,
        Rejection::UnknownPeer,
    ];

    /// Always `401 Unauthorized`.
    pub fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }

    /// The JSON body's `error`.
    pub fn body_error(&self) -> &'static str {
        match self {
            Rejection::MissingPeer => "missing_client_certificate",
            Rejection::WrongTrustDomain => "wrong_trust_domain",
            Rejection::UnknownPeer => "unknown_peer",
        }
    }

    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::MissingPeer => "missing_peer",
            Rejection::WrongTrustDomain => "wrong_trust_domain",
            Rejection::UnknownPeer => "unknown_peer",
        }
    }

    /// The response to an HTTP request: [`status`](Rejection::status) and
    /// a JSON body `{"error":` [`body_error`](Rejection::body_error)
    /// `,"message":` the `Display` text `}`.
    pub fn to_response<B: From<String>>(&self) -> Response<B> {
        response::json_error(self.status(), self.body_error(), &self.to_string())
    }

    /// The answer to a request with `request_headers`: `UNAUTHENTICATED`
    /// for a gRPC call, [`to_response`](Rejection::to_response) otherwise.
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
        f.write_str(match self {
            Rejection::MissingPeer => "a verified client certificate is required (mutual TLS)",
            Rejection::WrongTrustDomain => "the client certificate is of another trust domain",
            Rejection::UnknownPeer => "the client certificate names no caller of this service",
        })
    }
}

impl std::error::Error for Rejection {}
