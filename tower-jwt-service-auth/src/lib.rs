//! Service-to-service authentication for tower: short-lived service JWTs,
//! verified strictly, and API keys.
//!
//! # Layout
//!
//! - [`claims`]: what a service token says (`sub`, `iss`, `aud`, `exp`,
//!   `service`, `permissions`, ...).
//! - [`keys`]: signing and verification keys by `kid`, for rotation, from
//!   PEM files, environment variables and JWKS-style JSON.
//! - [`sign`]: minting tokens for a target service.
//! - [`verify`]: checking them, with one [`Rejection`](verify::Rejection)
//!   per way a token can be wrong.
//! - [`client`]: the layer that signs and attaches tokens, cached.
//! - [`server`]: the layers that verify tokens and check permissions.
//! - [`api_key`]: the API-key client and server layers.

#![forbid(unsafe_code)]

pub mod api_key;
pub mod claims;
pub mod client;
pub mod keys;
pub mod server;
pub mod sign;
pub mod verify;

mod escape;
mod response;
