//! Mutual TLS between the services: the certificates ([`certs`], the
//! `certs` command), a service's own side of them ([`identity`]: the CA
//! it trusts and the certificate it presents) and serving with them
//! ([`server`], `--tls-dir`) and calling with them ([`client`]).
//!
//! Each service has a short-lived leaf certificate whose one URI SAN is
//! its SPIFFE ID, `spiffe://<trust-domain>/<service>`, signed by a CA
//! that every service trusts; the ID is what a server reads from a
//! client's certificate
//! ([`PeerIdentity`](tower_jwt_service_auth::mtls::PeerIdentity)).

pub mod certs;
pub mod client;
mod files;
pub mod identity;
pub mod server;
