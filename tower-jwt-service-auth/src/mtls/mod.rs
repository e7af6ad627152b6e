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
//! This module reads identities; it holds no TLS code. Building the
//! certificates and the TLS configuration is for the application (the
//! demo's `certs` command and its `tls` module).

mod identity;

#[cfg(feature = "axum")]
mod extract;

pub use identity::{InvalidSpiffeId, PeerIdentity, SpiffeId};

#[cfg(feature = "axum")]
pub use extract::MissingPeerIdentity;
