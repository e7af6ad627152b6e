//! What became of each TLS handshake on a service's port, counted in its
//! `/metrics` (`tls_handshakes_total`, `tls_handshake_failures_total`).
//!
//! A failure's reason is read from the kind of error rustls or the
//! socket gave ([`HandshakeFailure::of`]), never from anything the peer
//! wrote, so the `reason` label has the fixed values of
//! [`HandshakeFailure::ALL`] whatever a client sends.

use std::fmt;
use std::io;
use std::time::Duration;

use rustls::{CertificateError, Error as TlsError, InvalidMessage, PeerIncompatible};
use tokio::time::Instant;

use super::server::PeerIdentityError;
use crate::telemetry::Metrics;

/// Why a handshake did not give a served connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeFailure {
    /// The client presented no certificate.
    NoCertificate,
    /// The client's certificate does not chain to the CA (another CA, one
    /// of the same name included: a signature the CA did not make).
    UnknownCa,
    /// The client's certificate has expired.
    Expired,
    /// Any other fault of the client's certificate (not valid yet, not
    /// for client authentication, badly encoded).
    BadCertificate,
    /// A verified certificate without exactly one valid SPIFFE ID.
    NoIdentity,
    /// The client offered no protocol version served (older than TLS 1.2).
    ProtocolVersion,
    /// The first bytes were not a TLS record: plaintext HTTP, say.
    NotTls,
    /// The peer sent a TLS alert: it refused this server's certificate,
    /// or gave up.
    PeerAlert,
    /// The connection's header read timeout passed before the handshake
    /// completed.
    Timeout,
    /// The serve loop closed the connection before its handshake
    /// completed: at the connection cap, or at shutdown.
    Closed,
    /// The socket failed, or the peer left mid-handshake.
    Io,
    /// Any other TLS error.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [HandshakeFailure; 12] = [
        HandshakeFailure::NoCertificate,
        HandshakeFailure::UnknownCa,
        HandshakeFailure::Expired,
        HandshakeFailure::BadCertificate,
        HandshakeFailure::NoIdentity,
        HandshakeFailure::ProtocolVersion,
        HandshakeFailure::NotTls,
        HandshakeFailure::PeerAlert,
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::Io,
        HandshakeFailure::Other,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::NoCertificate => "no_certificate",
            HandshakeFailure::UnknownCa => "unknown_ca",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::BadCertificate => "bad_certificate",
            HandshakeFailure::NoIdentity => "no_identity",
            HandshakeFailure::ProtocolVersion => "protocol_version",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::PeerAlert => "peer_alert",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Io => "io",
            HandshakeFailure::Other => "other",
        }
    }

    /// The reason of a failed handshake, from the error's kind: a rustls
    /// error (as tokio-rustls wraps it), a [`PeerIdentityError`], or a
    /// socket error.
    pub fn of(error: &io::Error) -> HandshakeFailure {
        let inner = error.get_ref();
        if inner.is_some_and(|e| e.is::<PeerIdentityError>()) {
            return HandshakeFailure::NoIdentity;
        }
        match inner.and_then(|e| e.downcast_ref::<TlsError>()) {
            Some(tls) => HandshakeFailure::of_tls(tls),
            None => HandshakeFailure::Io,
        }
    }

    fn of_tls(error: &TlsError) -> HandshakeFailure {
        match error {
            TlsError::NoCertificatesPresented => HandshakeFailure::NoCertificate,
            TlsError::InvalidCertificate(e) => match e {
                CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                    HandshakeFailure::UnknownCa
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    HandshakeFailure::Expired
                }
                _ => HandshakeFailure::BadCertificate,
            },
            TlsError::PeerIncompatible(
                PeerIncompatible::Tls12NotOffered
                | PeerIncompatible::Tls12NotOfferedOrEnabled
                | PeerIncompatible::SupportedVersionsExtensionRequired,
            ) => HandshakeFailure::ProtocolVersion,
            // What a first record that is not TLS (an HTTP request line)
            // breaks on.
            TlsError::InvalidMessage(
                InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
            ) => HandshakeFailure::NotTls,
            TlsError::AlertReceived(_) => HandshakeFailure::PeerAlert,
            _ => HandshakeFailure::Other,
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts one handshake's outcome into a registry: call
/// [`succeeded`](Tally::succeeded) or [`failed`](Tally::failed); one
/// dropped with neither (the connection task gave up on it) counts as
/// [`HandshakeFailure::Timeout`] once the header read timeout has passed
/// since it began, else as [`HandshakeFailure::Closed`].
pub(crate) struct Tally {
    metrics: Option<Metrics>,
    started: Instant,
    timeout: Duration,
}

impl Tally {
    /// Starts counting a handshake that the connection task abandons
    /// after `timeout`.
    pub(crate) fn start(metrics: Option<Metrics>, timeout: Duration) -> Tally {
        Tally {
            metrics,
            started: Instant::now(),
            timeout,
        }
    }

    /// The handshake gave a served connection.
    pub(crate) fn succeeded(mut self) {
        if let Some(m) = self.metrics.take() {
            m.tls_handshake(None);
        }
    }

    /// The handshake failed with `error`.
    pub(crate) fn failed(mut self, error: &io::Error) {
        if let Some(m) = self.metrics.take() {
            m.tls_handshake(Some(HandshakeFailure::of(error)));
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            // The serve loop starts the tally before it admits the
            // connection, so a close at its header read deadline is at
            // least `timeout` after `started`.
            let reason = if self.started.elapsed() >= self.timeout {
                HandshakeFailure::Timeout
            } else {
                HandshakeFailure::Closed
            };
            m.tls_handshake(Some(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(e: TlsError) -> io::Error {
        // As tokio-rustls reports a handshake error.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn reasons_come_from_the_error_kind() {
        let cases = [
            (
                wrapped(TlsError::NoCertificatesPresented),
                HandshakeFailure::NoCertificate,
            ),
            (
                wrapped(TlsError::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
                HandshakeFailure::UnknownCa,
            ),
            (
                wrapped(TlsError::InvalidCertificate(CertificateError::BadSignature)),
                HandshakeFailure::UnknownCa,
            ),
            (
                wrapped(TlsError::InvalidCertificate(CertificateError::Expired)),
                HandshakeFailure::Expired,
            ),
            (
                wrapped(TlsError::InvalidCertificate(CertificateError::NotValidYet)),
                HandshakeFailure::BadCertificate,
            ),
            (
                wrapped(TlsError::PeerIncompatible(
                    PeerIncompatible::Tls12NotOfferedOrEnabled,
                )),
                HandshakeFailure::ProtocolVersion,
            ),
            (
                wrapped(TlsError::InvalidMessage(InvalidMessage::InvalidContentType)),
                HandshakeFailure::NotTls,
            ),
            (
                wrapped(TlsError::AlertReceived(
                    rustls::AlertDescription::BadCertificate,
                )),
                HandshakeFailure::PeerAlert,
            ),
            (wrapped(TlsError::DecryptError), HandshakeFailure::Other),
            (
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    PeerIdentityError::NotOneUri,
                ),
                HandshakeFailure::NoIdentity,
            ),
            (
                io::Error::from(io::ErrorKind::UnexpectedEof),
                HandshakeFailure::Io,
            ),
            // A peer's text in a general error is not read.
            (
                wrapped(TlsError::General("expired".to_owned())),
                HandshakeFailure::Other,
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(HandshakeFailure::of(&error), reason, "{error:?}");
        }
        let labels: std::collections::HashSet<_> =
            HandshakeFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), HandshakeFailure::ALL.len());
    }

    #[tokio::test(start_paused = true)]
    async fn an_abandoned_handshake_is_a_timeout_only_after_the_timeout() {
        let metrics = Metrics::new();
        let timeout = Duration::from_secs(10);
        drop(Tally::start(Some(metrics.clone()), timeout));
        let early = Tally::start(Some(metrics.clone()), timeout);
        tokio::time::advance(timeout - Duration::from_millis(1)).await;
        drop(early);
        let late = Tally::start(Some(metrics.clone()), timeout);
        tokio::time::advance(timeout).await;
        drop(late);
        Tally::start(Some(metrics.clone()), timeout).succeeded();
        let text = metrics.render();
        assert!(
            text.contains("tls_handshake_failures_total{reason=\"closed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("tls_handshake_failures_total{reason=\"timeout\"} 1"),
            "{text}"
        );
        assert!(text.contains("tls_handshakes_total 1"), "{text}");
    }
}
