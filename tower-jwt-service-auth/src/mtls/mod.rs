//! Mutual TLS: who the peer of a connection is, by its certificate.
//!
//! With mutual TLS both ends present a certificate, and the caller's
//! identity is the SPIFFE ID in its certificate's URI SAN,
//! `spiffe://<trust-domain>/<service>`. The server parses it once per
//! handshake ([`SpiffeId::parse`]) and puts a [`PeerIdentity`] in the
//! extensions of every request on that connection, where layers and
//! handlers read it:
//!
//! ```
//! use http::Request;
//! use tower_jwt_service_auth::mtls::{PeerIdentity, SpiffeId};
//!
//! // What the server does after the handshake, for each request.
//! let id = SpiffeId::parse("spiffe://demo.local/order-service").unwrap();
//! let mut req = Request::new(());
//! req.extensions_mut().insert(PeerIdentity::new(id));
//!
//! // What a layer or a handler does.
//! let peer = req.extensions().get::<PeerIdentity>().unwrap();
//! assert_eq!(peer.service(), Some("order-service"));
//! assert_eq!(peer.trust_domain(), "demo.local");
//! ```
//!
//! With the `axum` feature, [`PeerIdentity`] is also an extractor; a
//! request without one is answered `401` ([`MissingPeerIdentity`]).
//!
//! # Why strict parsing
//!
//! An identity is compared, logged and used to look up permissions, so
//! two spellings of one identity (`Spiffe://`, `%2D`, `a/./b`, a trailing
//! `/`) would be two identities to every map and every comparison. The
//! parser accepts exactly the SPIFFE ID grammar and nothing else, so the
//! text of an accepted ID is its only spelling and can be compared as a
//! string. That grammar also excludes control characters, spaces and
//! quotes, so an ID is safe to print in a log line as it is.
//!
//! # Authenticating by certificate
//!
//! The identity serves two ways. Under tokens or API keys, the server
//! layers of [`jwt`](crate::jwt) and [`api_key`](crate::api_key) bind the
//! credential to it: a token or key is accepted over mutual TLS only from
//! the service the certificate names. Alone, [`PeerAuthLayer`] ([`server`])
//! authenticates the caller by the certificate and gives it the
//! permissions a [`PeerPolicy`] grants.
//!
//! This module reads identities; it holds no TLS code. Building the
//! certificates and the TLS configuration is for the application (the
//! demo's `certs` command and its `tls` module).

mod identity;
pub mod server;

#[cfg(feature = "axum")]
mod extract;

pub use identity::{InvalidSpiffeId, PeerIdentity, SpiffeId};
pub use server::{PeerAuthLayer, PeerPolicy, Rejection};

/// The peer of the request's connection when its certificate does not
/// name `service`: `None` for a request without a [`PeerIdentity`] (not
/// over mutual TLS) or from `service` itself. What the token and API-key
/// layers check to bind a credential to the connection it came over.
pub(crate) fn other_peer<'a>(
    extensions: &'a http::Extensions,
    service: &str,
) -> Option<&'a PeerIdentity> {
    extensions
        .get::<PeerIdentity>()
        .filter(|peer| peer.service() != Some(service))
}

#[cfg(feature = "axum")]
pub use extract::MissingPeerIdentity;
