//! Mutual TLS between the services: for now, the certificates
//! ([`certs`], the `certs` command). Serving and calling over TLS build
//! on the files it writes.
//!
//! Each service has a short-lived leaf certificate whose one URI SAN is
//! its SPIFFE ID, `spiffe://<trust-domain>/<service>`, signed by a CA
//! that every service trusts; the ID is what a server reads from a
//! client's certificate
//! ([`PeerIdentity`](tower_jwt_service_auth::mtls::PeerIdentity)).

pub mod certs;
