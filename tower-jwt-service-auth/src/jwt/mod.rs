//! Short-lived service JWTs: each caller signs a token for the service it
//! calls, and that service verifies it strictly.
//!
//! The same shape as [`api_key`](crate::api_key): what a credential is,
//! how a client attaches it, how a server checks it.
//!
//! - [`claims`]: what a service token says (`sub`, `iss`, `aud`, `exp`,
//!   `service`, `permissions`, ...).
//! - [`keys`]: signing and verification keys by `kid`, for rotation, from
//!   PEM files, environment variables and JWKS-style JSON; key generation.
//! - [`sign`]: minting tokens for a target service.
//! - [`verify`]: checking them, with one [`Rejection`] per way a token can
//!   be wrong.
//! - [`client`]: the layer that signs and attaches tokens, cached.
//! - [`server`]: the layers that verify tokens and check permissions.
//!
//! The types most code names are re-exported here, so
//! `use tower_jwt_service_auth::jwt::{Signer, Verifier, VerifyLayer};`
//! is enough for a first service.

pub mod claims;
pub mod client;
pub mod keys;
pub mod server;
pub mod sign;
pub mod verify;

pub use self::claims::Claims;
pub use self::client::SignTokenLayer;
pub use self::keys::{Ed25519KeyPair, KeySet, SigningKey, VerifyingKey};
pub use self::server::{RequirePermissionLayer, VerifyLayer};
pub use self::sign::Signer;
pub use self::verify::{Rejection, ServiceIdentity, Verifier};
