//! Service-to-service authentication for tower: short-lived service JWTs,
//! verified strictly, and API keys.
//!
//! The calling service signs a token for the service it calls; the called
//! service verifies it and checks the route's permission:
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_jwt_service_auth::jwt::{
//!     Ed25519KeyPair, KeySet, RequirePermissionLayer, ServiceIdentity, SignTokenLayer, Signer,
//!     Verifier, VerifyLayer,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // order-service's key pair (`demo-services keygen` writes it to files);
//! // both sides name it by the same kid.
//! let pair = Ed25519KeyPair::generate();
//!
//! // Server (user-service): verify every request, then require a permission.
//! let verifier = Verifier::new(
//!     "user-service",
//!     KeySet::new().with(pair.verifying_key("order-service-1", "order-service")?),
//! )
//! .grant("order-service", ["read:users"]);
//! let users = ServiceBuilder::new()
//!     .layer(VerifyLayer::new(verifier))
//!     .layer(RequirePermissionLayer::new("read:users"))
//!     .service(service_fn(|req: Request<String>| async move {
//!         let caller = req.extensions().get::<ServiceIdentity>().unwrap();
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello, {}", caller.service)))
//!     }));
//!
//! // Client (order-service): sign a token for user-service on the way out.
//! // Here it calls the server in-process; in a service, the HTTP client.
//! let signer = Signer::new("order-service", pair.signing_key("order-service-1")?)
//!     .permissions(["read:users"]);
//! let to_users = ServiceBuilder::new()
//!     .layer(SignTokenLayer::new(signer, "user-service"))
//!     .service(users.clone());
//!
//! let res = to_users.oneshot(Request::get("/users/7").body(String::new())?).await?;
//! assert_eq!(res.into_body(), "hello, order-service");
//!
//! // Without a token, the handler never runs.
//! let res = users.oneshot(Request::get("/users/7").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`jwt`]: service tokens: claims, keys, signing, verification, and
//!   their client ([`SignTokenLayer`](jwt::SignTokenLayer)) and server
//!   ([`VerifyLayer`](jwt::VerifyLayer),
//!   [`RequirePermissionLayer`](jwt::RequirePermissionLayer)) layers.
//! - [`api_key`]: API keys: the key store, and their client
//!   ([`ApiKeyClientLayer`](api_key::ApiKeyClientLayer)) and server
//!   ([`ApiKeyLayer`](api_key::ApiKeyLayer)) layers.
//! - [`mtls`]: mutual TLS: the peer's SPIFFE identity
//!   ([`SpiffeId`](mtls::SpiffeId), [`PeerIdentity`](mtls::PeerIdentity))
//!   that a TLS server hands to layers and handlers, which the token and
//!   API-key layers bind their credential to, and the server layer that
//!   authenticates by it alone ([`PeerAuthLayer`](mtls::PeerAuthLayer)).
//!
//! Each credential has its own refusal enum, named the same in every
//! module: [`jwt::Rejection`], [`api_key::Rejection`] and
//! [`mtls::Rejection`]. They are not one
//! type because they answer differently (a JWT refusal may be `403` for a
//! known caller without a permission, with an RFC 6750 `Bearer` challenge;
//! an API-key refusal is always `401` with an `ApiKey` challenge); the module
//! says which credential, the name says what it is. Both have `status`,
//! `reason` and `to_response`.

#![forbid(unsafe_code)]

pub mod api_key;
pub mod jwt;
pub mod mtls;

mod escape;
mod future;
mod response;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
