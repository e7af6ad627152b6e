//! Serving over mutual TLS: a service's [`ServerConfig`] from the files
//! `certs` writes, and [`TlsListener`], the serve loop's [`Accept`] for
//! it.
//!
//! Every client must present a certificate that chains to the directory's
//! `ca.pem` and is valid now; after the handshake the certificate's one
//! URI SAN, a SPIFFE ID, becomes the connection's [`PeerIdentity`], which
//! every request on it carries as an extension. A certificate without
//! exactly one valid SPIFFE ID fails the connection: a caller is either
//! identified or not served.
//!
//! Which HTTP a TLS connection speaks is told apart as over cleartext, by
//! the first decrypted bytes: ALPN offers `h2` and `http/1.1`, and a
//! client that negotiated `h2` opens with the HTTP/2 preface anyway.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tower_jwt_service_auth::mtls::{InvalidSpiffeId, PeerIdentity, SpiffeId};
use x509_parser::extensions::GeneralName;

pub use super::files::TlsSetupError;
#[cfg(doc)]
use super::handshakes::HandshakeFailure;
use super::handshakes::Tally;
use super::identity::TlsDir;
use crate::server::serve::{Accept, ConnectionInfo, HEADER_READ_TIMEOUT};
use crate::telemetry::{Escaped, Metrics};

/// The protocol versions served: TLS 1.2 and 1.3, nothing older (rustls
/// has nothing older either; listing them keeps it so if it ever did).
pub const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The ALPN protocols offered, preferred first: HTTP/2 (what gRPC
/// clients ask for over TLS), then HTTP/1.1.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Builds a server configuration from `tls` (see [`TlsDir::open`]):
/// client certificates required and verified against the directory's CA,
/// the service's own certificate from its [`Identity`](super::identity::Identity)
/// (so a reload reaches new handshakes), TLS 1.2 and 1.3, ALPN `h2` and
/// `http/1.1`.
pub fn server_config(tls: &TlsDir) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(tls.roots().clone(), tls.provider().clone())
            .build()
            .map_err(|e| TlsSetupError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(tls.provider().clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(TlsSetupError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(tls.identity().clone());
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

// === impl TlsListener ===

/// A TCP listener whose connections are served over mutual TLS: the
/// serve loop's [`Accept`] for `--tls-dir`.
///
/// [`accept`](Accept::accept) is the TCP accept; the TLS handshake and
/// reading the client's identity run in the connection's own task, under
/// its header read timeout.
pub struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    metrics: Option<Metrics>,
    header_read_timeout: Duration,
}

impl fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Serves `listener`'s connections with `config` (see
    /// [`server_config`]).
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> TlsListener {
        TlsListener {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            metrics: None,
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }

    /// Counts every handshake's outcome into `metrics`
    /// (`tls_handshakes_total`, `tls_handshake_failures_total` by
    /// [`HandshakeFailure`]). `header_read_timeout` is the serve loop's
    /// ([`Limits::header_read_timeout`](crate::server::serve::Limits)):
    /// a handshake it abandons that late is a timeout, earlier the loop
    /// closed it (connection cap, shutdown).
    pub fn with_metrics(mut self, metrics: Metrics, header_read_timeout: Duration) -> TlsListener {
        self.metrics = Some(metrics);
        self.header_read_timeout = header_read_timeout;
        self
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

impl Accept for TlsListener {
    type Conn = TcpStream;
    type Io = TlsStream<TcpStream>;

    fn accept(&mut self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send {
        self.listener.accept()
    }

    fn handshake(
        &self,
        conn: TcpStream,
    ) -> impl Future<Output = io::Result<(TlsStream<TcpStream>, ConnectionInfo)>> + Send + 'static
    {
        let accepting = self.acceptor.accept(conn);
        let tally = Tally::start(self.metrics.clone(), self.header_read_timeout);
        async move {
            let result = accepting.await.and_then(|stream| {
                let leaf = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first());
                // A refusal is logged where every failed handshake is (the
                // connection's task), with this error's escaped text.
                match peer_identity(leaf) {
                    Ok(id) => Ok((stream, ConnectionInfo::with_peer_identity(id))),
                    Err(e) => Err(io::Error::new(io::ErrorKind::PermissionDenied, e)),
                }
            });
            match &result {
                Ok(_) => tally.succeeded(),
                Err(e) => tally.failed(e),
            }
            result
        }
    }
}

/// The identity a verified client certificate proves: its single URI
/// SAN, as a SPIFFE ID.
pub fn peer_identity(leaf: Option<&CertificateDer<'_>>) -> Result<PeerIdentity, PeerIdentityError> {
    let leaf = leaf.ok_or(PeerIdentityError::NoCertificate)?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf).map_err(|_| PeerIdentityError::Unreadable)?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|_| PeerIdentityError::Unreadable)?;
    let mut uris = sans
        .iter()
        .flat_map(|san| &san.value.general_names)
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let (Some(uri), None) = (uris.next(), uris.next()) else {
        return Err(PeerIdentityError::NotOneUri);
    };
    SpiffeId::parse(uri)
        .map(PeerIdentity::new)
        .map_err(|reason| PeerIdentityError::InvalidSpiffeId {
            uri: uri.to_owned(),
            reason,
        })
}

/// Why a client certificate gives no identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentityError {
    /// The client presented no certificate (the verifier requires one, so
    /// only a misconfigured server sees this).
    NoCertificate,
    /// The certificate or its SAN extension cannot be parsed.
    Unreadable,
    /// The certificate has no URI SAN, or more than one.
    NotOneUri,
    /// Its URI SAN is not a valid SPIFFE ID.
    InvalidSpiffeId {
        /// The URI, as the certificate has it.
        uri: String,
        /// What is wrong with it.
        reason: InvalidSpiffeId,
    },
}

impl fmt::Display for PeerIdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerIdentityError::NoCertificate => f.write_str("no client certificate"),
            PeerIdentityError::Unreadable => f.write_str("the client certificate cannot be parsed"),
            PeerIdentityError::NotOneUri => {
                f.write_str("the client certificate does not have exactly one URI SAN")
            }
            // The URI comes from the peer: escaped before any log sees it.
            PeerIdentityError::InvalidSpiffeId { uri, reason } => write!(
                f,
                "the client certificate's URI SAN {} is not a SPIFFE ID: {reason}",
                Escaped(uri.as_str())
            ),
        }
    }
}

impl std::error::Error for PeerIdentityError {}

#[cfg(test)]
mod tests {
    use rcgen::string::Ia5String;
    use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
    use rustls::RootCertStore;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;

    use super::super::certs::CA_CERT;
    use super::*;

    /// A self-signed certificate with these SANs (the chain is the
    /// verifier's business; this reads the identity of any leaf).
    fn leaf(sans: &[SanType]) -> CertificateDer<'static> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans.to_vec();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(Ia5String::try_from(text).unwrap())
    }

    #[test]
    fn the_single_uri_san_is_the_identity() {
        let cert = leaf(&[
            SanType::DnsName(Ia5String::try_from("localhost").unwrap()),
            uri("spiffe://demo.local/order-service"),
        ]);
        let id = peer_identity(Some(&cert)).unwrap();
        assert_eq!(id.spiffe_id().as_str(), "spiffe://demo.local/order-service");
        assert_eq!(id.service(), Some("order-service"));
    }

    #[test]
    fn a_certificate_without_exactly_one_spiffe_id_gives_none() {
        assert_eq!(peer_identity(None), Err(PeerIdentityError::NoCertificate));
        let dns_only = leaf(&[SanType::DnsName(Ia5String::try_from("localhost").unwrap())]);
        assert_eq!(
            peer_identity(Some(&dns_only)),
            Err(PeerIdentityError::NotOneUri)
        );
        let two = leaf(&[
            uri("spiffe://demo.local/order-service"),
            uri("spiffe://demo.local/api-gateway"),
        ]);
        assert_eq!(peer_identity(Some(&two)), Err(PeerIdentityError::NotOneUri));
        let https = leaf(&[uri("https://demo.local/order-service")]);
        assert!(matches!(
            peer_identity(Some(&https)),
            Err(PeerIdentityError::InvalidSpiffeId { .. })
        ));
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert_eq!(
            peer_identity(Some(&garbage)),
            Err(PeerIdentityError::Unreadable)
        );
    }

    #[test]
    fn a_peer_chosen_uri_is_escaped_in_the_error() {
        let cert = leaf(&[uri("spiffe://demo.local/a\u{1b}[31m")]);
        let text = peer_identity(Some(&cert)).unwrap_err().to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn setup_errors_name_the_missing_file() {
        let dir = std::env::temp_dir().join(format!("tls-server-missing-{}", std::process::id()));
        let err = TlsDir::open(&dir, "user-service").unwrap_err();
        assert!(matches!(err, TlsSetupError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    /// A CA-signed client certificate with no SPIFFE ID passes the
    /// verifier but not the identity check: the connection gets no
    /// answer, while the same CA's gateway leaf is served.
    #[tokio::test]
    async fn a_verified_certificate_without_a_spiffe_id_gets_no_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = std::env::temp_dir().join(format!("tls-server-no-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        super::super::certs::create(
            &dir,
            "demo.local",
            std::time::Duration::from_secs(3600),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();

        // A leaf of the same CA naming only `localhost`.
        let ca_key =
            KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key.pem")).unwrap()).unwrap();
        let ca_der = CertificateDer::from_pem_file(dir.join(CA_CERT)).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, &ca_key).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names =
            vec![SanType::DnsName(Ia5String::try_from("localhost").unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let nameless = params.signed_by(&key, &issuer).unwrap().der().clone();
        let nameless_key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();

        let config = server_config(&TlsDir::open(&dir, "user-service").unwrap()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        tokio::spawn(crate::server::serve::serve(
            TlsListener::new(listener, config),
            app,
            crate::server::serve::Limits::default(),
            std::future::pending(),
        ));

        let mut roots = RootCertStore::empty();
        roots.add(ca_der).unwrap();
        let client = |chain, key| {
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)
            .unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(config))
        };
        // Whatever the connection answers to a GET before it closes.
        let answer = |connector: tokio_rustls::TlsConnector| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut answer = Vec::new();
            if let Ok(mut tls) = connector.connect(name, tcp).await
                && tls
                    .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await
                    .is_ok()
            {
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = tls.read(&mut buf).await {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.ends_with(b"ok") {
                        break;
                    }
                }
            }
            String::from_utf8_lossy(&answer).into_owned()
        };
        let bound = std::time::Duration::from_secs(5);

        let gateway = client(
            vec![CertificateDer::from_pem_file(dir.join("api-gateway.pem")).unwrap()],
            PrivateKeyDer::from_pem_file(dir.join("api-gateway.key.pem")).unwrap(),
        );
        let served = tokio::time::timeout(bound, answer(gateway)).await.unwrap();
        assert!(served.starts_with("HTTP/1.1 200"), "{served:?}");

        let refused = tokio::time::timeout(bound, answer(client(vec![nameless], nameless_key)))
            .await
            .expect("the connection is closed");
        assert_eq!(refused, "", "no answer without an identity");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
