//! Calling over mutual TLS: a rustls [`ClientConfig`] per called service
//! ([`client_config`]) and the hyper-util connector that uses it
//! ([`connector`]).
//!
//! The caller presents its own certificate (its [`Identity`], asked on
//! every handshake, so a reload reaches new connections) and accepts a
//! server only if the server's certificate chains to the directory's CA,
//! is valid now, and carries as its one URI SAN the SPIFFE ID of the
//! service the caller meant to call.
//!
//! Why not the DNS name, as browsers check? Every leaf `certs` writes
//! names `localhost` and `127.0.0.1`: the name says where a service runs,
//! not which service it is, so a notification service listening where
//! the user service was expected would pass a name check. The SPIFFE ID
//! is the service's identity, and only it is checked.
//!
//! [`Identity`]: super::identity::Identity

use std::fmt;
use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use tower_jwt_service_auth::mtls::SpiffeId;

use super::files::TlsSetupError;
use super::identity::TlsDir;
use super::server::{PROTOCOL_VERSIONS, PeerIdentityError, peer_identity};
use crate::telemetry::Escaped;

/// ALPN for REST calls: HTTP/1.1 only, as the plaintext client speaks.
pub const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// ALPN for gRPC calls: HTTP/2 only.
pub const ALPN_H2: &[&[u8]] = &[b"h2"];

/// A client configuration for calling the service `expect` with `tls`:
/// TLS 1.2 and 1.3 on the directory's provider (ring), the caller's own
/// certificate from its [`Identity`](super::identity::Identity) (the
/// resolver itself, never a copy), rustls' default session resumption,
/// offering `alpn`, and a server accepted only if it proves `expect`
/// (see the [module docs](self)).
///
/// Build one per called service: the session cache is the configuration's,
/// so a resumed session is always one with a server that proved `expect`.
pub fn client_config(
    tls: &TlsDir,
    expect: SpiffeId,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let verifier = ExpectedServer::new(tls, expect);
    let mut config = ClientConfig::builder_with_provider(tls.provider().clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsSetupError::Config)?
        .dangerous()
        // Replaces the name check by the SPIFFE ID check; the chain,
        // validity and key usage are webpki's, as in the default verifier.
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(tls.identity().clone());
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The SPIFFE ID of `service` in the trust domain of `tls`'s own
/// certificate: who a caller with `tls` expects to find when it calls
/// `service`.
pub fn expected(tls: &TlsDir, service: &str) -> Result<SpiffeId, TlsSetupError> {
    let own = tls.identity().current();
    SpiffeId::for_service(own.spiffe_id.trust_domain(), service).map_err(|e| {
        TlsSetupError::Identity {
            path: tls.identity().cert_path().to_owned(),
            reason: format!("no SPIFFE ID for {service} in its trust domain: {e}"),
        }
    })
}

/// hyper-util's connector over TLS with `config` (see [`client_config`]):
/// `https://` URLs only, so a misconfigured plaintext URL fails to
/// connect rather than calling without TLS. HTTP/2 is used when ALPN
/// chose it.
pub fn connector(config: Arc<ClientConfig>) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    // The scheme is the TLS connector's to check, not the TCP one's.
    http.enforce_http(false);
    let mut https = HttpsConnector::from((http, config));
    https.enforce_https();
    https
}

// === impl ExpectedServer ===

/// Verifies a server's certificate as webpki does for any server, except
/// that the name checked is the SPIFFE ID of the service meant, not the
/// DNS name or address dialled.
struct ExpectedServer {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    expect: SpiffeId,
}

impl fmt::Debug for ExpectedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectedServer")
            .field("expect", &self.expect.as_str())
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl ExpectedServer {
    fn new(tls: &TlsDir, expect: SpiffeId) -> ExpectedServer {
        ExpectedServer {
            roots: tls.roots().clone(),
            provider: tls.provider().clone(),
            expect,
        }
    }
}

impl ServerCertVerifier for ExpectedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain first: an identity is only read from a certificate the
        // CA vouches for (and that has not expired).
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let presented = match peer_identity(Some(end_entity)) {
            Ok(id) if id.spiffe_id() == &self.expect => return Ok(ServerCertVerified::assertion()),
            Ok(id) => Presented::Other(id.spiffe_id().clone()),
            Err(e) => Presented::None(e),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(UnexpectedServer {
                expected: self.expect.clone(),
                presented,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A server whose certificate chains to the CA but is not the service the
/// caller meant to call: what the handshake fails with.
#[derive(Clone)]
pub struct UnexpectedServer {
    expected: SpiffeId,
    presented: Presented,
}

#[derive(Debug, Clone)]
enum Presented {
    Other(SpiffeId),
    None(PeerIdentityError),
}

impl UnexpectedServer {
    /// The identity the caller meant to reach.
    pub fn expected(&self) -> &SpiffeId {
        &self.expected
    }

    /// The identity the server proved instead, if its certificate had one.
    pub fn presented(&self) -> Option<&SpiffeId> {
        match &self.presented {
            Presented::Other(id) => Some(id),
            Presented::None(_) => None,
        }
    }
}

impl fmt::Display for UnexpectedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected the server {}, ", self.expected)?;
        // What the server presented is its text, not ours: escaped.
        match &self.presented {
            Presented::Other(id) => write!(f, "it presented {}", Escaped(id.as_str())),
            Presented::None(PeerIdentityError::InvalidSpiffeId { uri, reason }) => write!(
                f,
                "its certificate's URI SAN {} is not a SPIFFE ID: {reason}",
                Escaped(uri.as_str())
            ),
            Presented::None(PeerIdentityError::NotOneUri) => {
                f.write_str("its certificate does not have exactly one URI SAN")
            }
            Presented::None(_) => f.write_str("its certificate gives no identity"),
        }
    }
}

// rustls shows the errors of a verifier with `{:?}`: the same sentence,
// escaped the same way, whichever way it is printed.
impl fmt::Debug for UnexpectedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for UnexpectedServer {}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use rustls::pki_types::pem::PemObject;
    use tokio::net::{TcpListener, TcpStream};

    use super::super::certs;
    use super::super::server::server_config;
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A fresh `certs` directory, its leaves issued at `issued` for `ttl`.
    fn dir(name: &str, issued: time::OffsetDateTime, ttl: Duration) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tls-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        certs::create(&dir, "demo.local", ttl, issued).unwrap();
        dir
    }

    fn leaf(dir: &Path, service: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(dir.join(certs::cert_file(service))).unwrap()
    }

    /// The order service's verifier for calls to the user service.
    fn order_to_users(dir: &Path) -> ExpectedServer {
        let tls = TlsDir::open(dir, "order-service").unwrap();
        let expect = expected(&tls, "user-service").unwrap();
        assert_eq!(expect.as_str(), "spiffe://demo.local/user-service");
        ExpectedServer::new(&tls, expect)
    }

    fn verify(verifier: &ExpectedServer, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        verifier
            .verify_server_cert(cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
    }

    #[test]
    fn the_service_meant_is_accepted_whatever_name_was_dialled() {
        let dir = dir("right", time::OffsetDateTime::now_utc(), HOUR);
        let verifier = order_to_users(&dir);
        verify(&verifier, &leaf(&dir, "user-service")).unwrap();
        // The name dialled plays no part: only the SPIFFE ID does.
        let elsewhere = ServerName::try_from("users.example").unwrap();
        verifier
            .verify_server_cert(
                &leaf(&dir, "user-service"),
                &[],
                &elsewhere,
                &[],
                UnixTime::now(),
            )
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_service_of_the_same_ca_is_refused_and_named() {
        let dir = dir("other", time::OffsetDateTime::now_utc(), HOUR);
        let verifier = order_to_users(&dir);
        let err = verify(&verifier, &leaf(&dir, "notification-service")).unwrap_err();
        let rustls::Error::InvalidCertificate(CertificateError::Other(other)) = &err else {
            panic!("{err:?}");
        };
        let unexpected = other.0.downcast_ref::<UnexpectedServer>().unwrap();
        assert_eq!(
            unexpected.presented().map(SpiffeId::as_str),
            Some("spiffe://demo.local/notification-service")
        );
        assert!(
            err.to_string().contains(
                "expected the server spiffe://demo.local/user-service, \
                 it presented spiffe://demo.local/notification-service"
            ),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_same_service_from_another_ca_is_refused() {
        let ours = dir("ours", time::OffsetDateTime::now_utc(), HOUR);
        let theirs = dir("theirs", time::OffsetDateTime::now_utc(), HOUR);
        let err = verify(&order_to_users(&ours), &leaf(&theirs, "user-service")).unwrap_err();
        // Both CAs have the same name (`certs` names every CA alike), so
        // webpki finds the issuer and refuses its signature.
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature | CertificateError::UnknownIssuer
                )
            ),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&ours);
        let _ = std::fs::remove_dir_all(&theirs);
    }

    #[test]
    fn an_expired_certificate_of_the_service_meant_is_refused() {
        let two_days_ago = time::OffsetDateTime::now_utc() - time::Duration::days(2);
        let dir = dir("expired", two_days_ago, Duration::from_secs(60));
        let err = verify(&order_to_users(&dir), &leaf(&dir, "user-service")).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
                    | rustls::Error::InvalidCertificate(CertificateError::Expired)
            ),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Over a real handshake: the configuration presents the caller's
    /// certificate (the server requires one) and refuses a server of the
    /// same CA that is not the service meant.
    #[tokio::test]
    async fn a_handshake_with_the_wrong_service_fails_and_the_right_one_succeeds() {
        let dir = dir("handshake", time::OffsetDateTime::now_utc(), HOUR);
        let order = TlsDir::open(&dir, "order-service").unwrap();
        let to_users = client_config(
            &order,
            expected(&order, "user-service").unwrap(),
            ALPN_HTTP1,
        )
        .unwrap();
        let serve = |service: &'static str| {
            let config = server_config(&TlsDir::open(&dir, service).unwrap()).unwrap();
            async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                tokio::spawn(async move {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // The client's identity, as the server read it.
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
                                let id = peer_identity(Some(&leaf)).unwrap();
                                assert_eq!(id.service(), Some("order-service"));
                            }
                        });
                    }
                });
                addr
            }
        };
        let connect = |addr| {
            let connector = tokio_rustls::TlsConnector::from(to_users.clone());
            async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap();
                connector.connect(name, tcp).await
            }
        };
        let bound = Duration::from_secs(5);
        let users = serve("user-service").await;
        tokio::time::timeout(bound, connect(users))
            .await
            .unwrap()
            .expect("the user service is accepted");
        let impostor = serve("notification-service").await;
        let err = tokio::time::timeout(bound, connect(impostor))
            .await
            .unwrap()
            .expect_err("another service is refused");
        assert!(
            err.to_string()
                .contains("it presented spiffe://demo.local/notification-service"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
