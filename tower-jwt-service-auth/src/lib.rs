//! Service-to-service authentication for tower: short-lived service JWTs,
//! verified strictly, and API keys.
//!
//! # Layout
//!
//! - [`jwt`]: service tokens: claims, keys, signing, verification, and
//!   their client ([`SignTokenLayer`](jwt::SignTokenLayer)) and server
//!   ([`VerifyLayer`](jwt::VerifyLayer)) layers.
//! - [`api_key`]: API keys: the key store, and their client
//!   ([`ApiKeyClientLayer`](api_key::ApiKeyClientLayer)) and server
//!   ([`ApiKeyLayer`](api_key::ApiKeyLayer)) layers.
//!
//! Each module has its own [`Rejection`](jwt::Rejection)
//! ([`api_key::Rejection`]): one enum per credential, named the same in
//! both, each with the HTTP answer it maps to.

#![forbid(unsafe_code)]

pub mod api_key;
pub mod jwt;

mod escape;
mod future;
mod response;
