//! [`PeerIdentity`] as an axum extractor (feature `axum`).

use std::fmt;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use super::PeerIdentity;
use crate::response::{self, GrpcCode};

/// Handlers take the peer's identity as an argument; a request without
/// one is answered `401` ([`MissingPeerIdentity`]).
impl<S: Send + Sync> FromRequestParts<S> for PeerIdentity {
    type Rejection = MissingPeerIdentity;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<PeerIdentity>()
            .cloned()
            .ok_or_else(|| MissingPeerIdentity {
                grpc: response::is_grpc(&parts.headers),
            })
    }
}

/// The [`PeerIdentity`] extractor found no identity: the request did not
/// come over a connection whose client certificate was verified.
///
/// Unlike a missing [`ServiceIdentity`](crate::jwt::ServiceIdentity),
/// this is the caller's problem as often as the server's: a route may be
/// served both over mutual TLS and in plaintext (a health port, a test),
/// and a caller reaching it in plaintext has not proved who it is. So it
/// is answered `401` with `{"error": "missing_client_certificate",
/// "message": ...}`, or `grpc-status: 16` (`UNAUTHENTICATED`) for a gRPC
/// call, and not logged (a caller could fill the log).
///
/// ```
/// use axum::Router;
/// use axum::body::Body;
/// use axum::routing::get;
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_jwt_service_auth::mtls::{PeerIdentity, SpiffeId};
///
/// async fn whoami(peer: PeerIdentity) -> String {
///     peer.to_string()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let app = Router::new().route("/whoami", get(whoami));
///
/// // The TLS server inserts the identity; here, by hand.
/// let id = SpiffeId::parse("spiffe://demo.local/order-service").unwrap();
/// let mut req = Request::get("/whoami").body(Body::empty()).unwrap();
/// req.extensions_mut().insert(PeerIdentity::new(id));
/// let res = app.clone().oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
///
/// // No verified client certificate: 401.
/// let req = Request::get("/whoami").body(Body::empty()).unwrap();
/// let res = app.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPeerIdentity {
    /// The request was a gRPC call, so the answer is a gRPC status.
    grpc: bool,
}

impl fmt::Display for MissingPeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a verified client certificate is required (mutual TLS)")
    }
}

impl std::error::Error for MissingPeerIdentity {}

impl IntoResponse for MissingPeerIdentity {
    fn into_response(self) -> Response {
        if self.grpc {
            return response::grpc_error(GrpcCode::Unauthenticated, &self.to_string());
        }
        response::json_error(
            StatusCode::UNAUTHORIZED,
            "missing_client_certificate",
            &self.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use http::Request;
    use http::header::CONTENT_TYPE;
    use tower::ServiceExt;

    use super::*;
    use crate::mtls::SpiffeId;

    fn app() -> Router {
        async fn whoami(peer: PeerIdentity) -> String {
            format!("{} {}", peer.service().unwrap_or("-"), peer)
        }
        Router::new().route("/whoami", get(whoami))
    }

    async fn body(res: Response) -> String {
        let bytes = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn hands_the_handler_the_identity_in_the_extensions() {
        let mut req = Request::get("/whoami").body(Body::empty()).unwrap();
        let id = SpiffeId::parse("spiffe://demo.local/order-service").unwrap();
        req.extensions_mut().insert(PeerIdentity::new(id));
        let res = app().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            body(res).await,
            "order-service spiffe://demo.local/order-service"
        );
    }

    #[tokio::test]
    async fn answers_401_json_without_an_identity() {
        let req = Request::get("/whoami").body(Body::empty()).unwrap();
        let res = app().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(json["error"], "missing_client_certificate");
        assert_eq!(
            json["message"],
            "a verified client certificate is required (mutual TLS)"
        );
    }

    #[tokio::test]
    async fn answers_a_grpc_call_unauthenticated() {
        let req = Request::get("/whoami")
            .header(CONTENT_TYPE, "application/grpc")
            .body(Body::empty())
            .unwrap();
        let res = app().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(
            res.headers()["grpc-message"],
            "a verified client certificate is required (mutual TLS)"
        );
        assert!(body(res).await.is_empty());
    }
}
