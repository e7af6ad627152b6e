//! API keys: the simplest way for one service to prove who it is to another.
//!
//! The caller sends its name in `X-Service-Name` and its key in `X-API-Key`
//! ([`ApiKeyClientLayer`]); the server checks the pair against an
//! [`ApiKeys`] store ([`ApiKeyLayer`]), answers `401` with a JSON body when
//! it does not hold (a gRPC call: `grpc-status` 16, `UNAUTHENTICATED`), and
//! otherwise hands the handler an [`ApiKeyIdentity`] in the request's
//! extensions.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_service_auth::api_key::{ApiKeyClientLayer, ApiKeyIdentity, ApiKeyLayer, ApiKeys};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The notification service accepts order-service's old and new key
//! // while order-service rotates from v1 to v2.
//! let keys = ApiKeys::new()
//!     .with_key("order-service", "v1", "k7Hq2-old-random-secret")
//!     .with_key("order-service", "v2", "Zp4xN-new-random-secret");
//! let server = ServiceBuilder::new()
//!     .layer(ApiKeyLayer::new(keys))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let caller = req.extensions().get::<ApiKeyIdentity>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello, {}", caller.service)))
//!     }));
//!
//! // order-service sends its name and key on every call.
//! let client = ServiceBuilder::new()
//!     .layer(ApiKeyClientLayer::new("order-service", "Zp4xN-new-random-secret").unwrap())
//!     .service(server);
//!
//! let res = client.oneshot(Request::new(String::new())).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.into_body(), "hello, order-service");
//! # }
//! ```
//!
//! # Why API keys, and when not
//!
//! A key needs no clock, no signing and no key distribution beyond handing
//! each caller one secret, so it is the first method a new service can
//! use. But a key never expires and is not bound to the service it is sent
//! to: whoever sees one can replay it anywhere it is accepted until it is
//! rotated. Prefer the short-lived tokens of [`sign`](crate::jwt::sign) and
//! [`verify`](crate::jwt::verify) where both sides can use them.
//!
//! # Why digests
//!
//! [`ApiKeys`] keeps only the SHA-256 digest of each key, so the server's
//! configuration, memory or a log of its `Debug` output never hold a key
//! that could be replayed. SHA-256 is fast, which is fine for random keys
//! of 128 bits or more and useless for passwords: generate keys, never
//! choose them. Digests are compared with
//! [`subtle::ConstantTimeEq`], against every active version of the
//! service, so the time taken does not tell how close a guess was.
//!
//! # Why versions
//!
//! Each service may have several active keys, named by a version. Rotating
//! is then four steps with no failed call: add the new version to the
//! server, move the caller to the new key, watch the logs (each accepted
//! call logs the version it matched), and remove the old version.
//!
//! # Why 401 and never 403
//!
//! Every rejection here is `401 Unauthorized`, also for a valid key of the
//! wrong service: until the key matches, the caller's identity is not
//! established, so the failure is one of authentication. `403 Forbidden`
//! is for a caller that is known but may not do what it asks, which is for
//! the handler to decide from the [`ApiKeyIdentity`].

/// The response future, shared with the JWT server layers: the inner
/// call, or a refusal.
pub mod future {
    pub use crate::future::ResponseFuture;
}

mod client;
mod rejection;
mod server;
mod store;

use http::header::HeaderName;

pub use self::client::{ApiKeyClient, ApiKeyClientLayer, ClientConfigError};
pub use self::rejection::Rejection;
pub use self::server::{ApiKey, ApiKeyLayer, ApiKeyStats};
pub use self::store::ApiKeys;

/// The header that carries the key: `x-api-key`.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The header that names the calling service: `x-service-name`.
pub const SERVICE_NAME_HEADER: HeaderName = HeaderName::from_static("x-service-name");

/// The longest [`API_KEY_HEADER`] or [`SERVICE_NAME_HEADER`] value
/// accepted, in bytes; longer ones are refused before any hashing.
pub const MAX_HEADER_BYTES: usize = 256;

/// Who called, established from an API key. [`ApiKey`] inserts it into the
/// request's extensions before calling the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyIdentity {
    /// The calling service, as named in [`SERVICE_NAME_HEADER`].
    pub service: String,
    /// The version of the service's key that matched, to follow a rotation.
    pub key_version: String,
}

/// What is wrong with a header value, if anything. Keys and service names
/// are tokens: one to [`MAX_HEADER_BYTES`] visible ASCII characters without
/// spaces. A space or a non-ASCII byte is a mistake (a stray newline from a
/// file, a pasted quote) better refused on both sides than half-matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenProblem {
    Empty,
    TooLong,
    NotVisibleAscii,
}

impl TokenProblem {
    /// Checks the length first, so an oversized value is refused without
    /// reading all of it.
    fn of(bytes: &[u8]) -> Option<TokenProblem> {
        if bytes.is_empty() {
            Some(TokenProblem::Empty)
        } else if bytes.len() > MAX_HEADER_BYTES {
            Some(TokenProblem::TooLong)
        } else if !bytes.iter().all(u8::is_ascii_graphic) {
            Some(TokenProblem::NotVisibleAscii)
        } else {
            None
        }
    }
}
