//! Mutual TLS between the services: the certificates ([`certs`], the
//! `certs` command), a service's own side of them ([`identity`]: the CA
//! it trusts and the certificate it presents) and serving with them
//! ([`server`], `--tls-dir`), with its handshakes counted
//! ([`handshakes`]) and its certificate reloaded as it is renewed
//! ([`reload`]), and calling with them ([`client`]).
//!
//! Each service has a short-lived leaf certificate whose one URI SAN is
//! its SPIFFE ID, `spiffe://<trust-domain>/<service>`, signed by a CA
//! that every service trusts; the ID is what a server reads from a
//! client's certificate
//! ([`PeerIdentity`](tower_jwt_service_auth::mtls::PeerIdentity)).

pub mod certs;
pub mod client;
mod files;
pub mod handshakes;
pub mod identity;
pub mod reload;
pub mod server;

/// `t` in RFC 3339, UTC, to the second (`2026-12-01T01:00:00Z`).
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
