//! [`ServiceIdentity`] as an axum extractor (feature `axum`).

use std::fmt;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::request::Parts;

use crate::jwt::verify::ServiceIdentity;

/// Handlers take the caller's identity as an argument, as
/// `Extension<ServiceIdentity>` would give it, but with a rejection that
/// says what went wrong when the route is not behind a
/// [`VerifyLayer`](super::VerifyLayer).
impl<S: Send + Sync> FromRequestParts<S> for ServiceIdentity {
    type Rejection = MissingVerifyLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ServiceIdentity>() {
            Some(identity) => Ok(identity.clone()),
            None => {
                tracing::error!(
                    target: "tower_jwt_service_auth::jwt::server",
                    method = %parts.method,
                    path = %crate::escape::Escaped(parts.uri.path()),
                    "{}",
                    MissingVerifyLayer::MESSAGE
                );
                Err(MissingVerifyLayer {
                    grpc: crate::response::is_grpc(&parts.headers),
                })
            }
        }
    }
}

/// The [`ServiceIdentity`] extractor found no identity: the route is not
/// behind a [`VerifyLayer`](super::VerifyLayer).
///
/// [`VerifyLayer`](super::VerifyLayer) answers every request it cannot
/// verify itself, so a request reaching a handler without an identity
/// means the server was wired wrong, not that the caller failed to
/// authenticate. It is answered `500` with
/// `{"error": "internal", "message": ...}` and logged as an error, rather
/// than a `401` that would send the caller hunting for a token problem.
/// A gRPC call gets `grpc-status: 13` (`INTERNAL`) with the same message.
///
/// ```
/// use axum::Router;
/// use axum::body::Body;
/// use axum::routing::get;
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
/// use tower_jwt_service_auth::jwt::server::VerifyLayer;
/// use tower_jwt_service_auth::jwt::sign::Signer;
/// use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};
///
/// async fn whoami(caller: ServiceIdentity) -> String {
///     caller.service
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let secret = [9u8; 32];
/// let keys = KeySet::new().with(VerifyingKey::hs256("k1", &secret).unwrap());
/// let app = Router::new()
///     .route("/whoami", get(whoami))
///     .layer(VerifyLayer::new(Verifier::new("user-service", keys)));
///
/// let signer = Signer::new("order-service", SigningKey::hs256("k1", &secret).unwrap());
/// let token = signer.sign("user-service").unwrap().token;
/// let req = Request::get("/whoami")
///     .header("authorization", format!("Bearer {token}"))
///     .body(Body::empty())
///     .unwrap();
/// let res = app.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::OK);
/// let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
/// assert_eq!(body, "order-service");
///
/// // The same handler on a route without the layer: a setup bug.
/// let forgot_the_layer = Router::new().route("/whoami", get(whoami));
/// let req = Request::get("/whoami").body(Body::empty()).unwrap();
/// let res = forgot_the_layer.oneshot(req).await.unwrap();
/// assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingVerifyLayer {
    /// The request was a gRPC call, so the answer is a gRPC status.
    grpc: bool,
}

impl MissingVerifyLayer {
    const MESSAGE: &'static str = "ServiceIdentity extractor used on a route without VerifyLayer";
}

impl fmt::Display for MissingVerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MissingVerifyLayer::MESSAGE)
    }
}

impl std::error::Error for MissingVerifyLayer {}

impl IntoResponse for MissingVerifyLayer {
    fn into_response(self) -> Response {
        if self.grpc {
            return crate::response::grpc_error(
                crate::response::GrpcCode::Internal,
                &self.to_string(),
            );
        }
        crate::response::json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &self.to_string(),
        )
    }
}
