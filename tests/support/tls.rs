//! A client of the services over mutual TLS: a rustls configuration
//! presenting one of a `certs` directory's leaves, and one request per
//! connection.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use demo_services::auth::{Keys, USER_SERVICE};
use demo_services::tls::certs;
use demo_services::tls::identity::TlsDir;
use demo_services::user;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A fresh `certs` directory: trust domain `demo.local`, leaves valid
/// for the default 24 h from now.
pub fn certs_dir() -> crate::TempDir {
    let dir = crate::TempDir::new();
    certs::create(
        dir.path(),
        certs::DEFAULT_TRUST_DOMAIN,
        certs::DEFAULT_LEAF_TTL,
        time::OffsetDateTime::now_utc(),
    )
    .expect("create certs");
    dir
}

/// The user service serving over mutual TLS with `certs`' files, its
/// data in `data`.
pub async fn user_over_tls(
    certs: &Path,
    data: &crate::Data,
    keys: &Keys,
) -> (crate::Running, user::State) {
    let tls = TlsDir::open(certs, USER_SERVICE).expect("open the TLS directory");
    crate::start_user_with(data, keys, None, Some(tls)).await
}

/// The longest one request may take, handshake included.
pub const BOUND: Duration = Duration::from_secs(10);

/// What went wrong, the handshake included.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client configuration trusting `dir`'s CA and presenting `service`'s
/// leaf from `dir`, TLS 1.2 or 1.3, on ring.
pub fn client_config(dir: &Path, service: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join(certs::CA_CERT)).expect("ca.pem") {
        roots.add(ca.expect("a CA certificate")).expect("a CA root");
    }
    let chain = CertificateDer::pem_file_iter(dir.join(certs::cert_file(service)))
        .expect("the leaf")
        .collect::<Result<Vec<_>, _>>()
        .expect("the leaf's certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join(certs::key_file(service))).expect("the key");
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("a client certificate");
    Arc::new(config)
}

/// What a request over TLS came to.
#[derive(Debug)]
pub struct TlsAnswer {
    /// The status.
    pub status: StatusCode,
    /// The body, parsed (or `Null`).
    pub json: serde_json::Value,
    /// The body as text.
    pub body: String,
}

/// Sends `method path` to `addr` over TLS with `config`, on a connection
/// of its own, over HTTP/1.1, with `headers` and `body`.
pub async fn send(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<TlsAnswer, Error> {
    tokio::time::timeout(BOUND, async {
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let mut req = Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("host", "localhost");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned())))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let res = sender.send_request(req).await?;
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(TlsAnswer {
            status,
            json: serde_json::from_str(&body).unwrap_or_default(),
            body,
        })
    })
    .await
    .map_err(|_| format!("no answer from {addr} within {BOUND:?}"))?
}
