//! Serving over mutual TLS (`--tls-dir`), over real sockets on 127.0.0.1:
//! a client with a leaf from the CA is served and identified; no
//! certificate, one from another CA (also one of the same name) and an
//! expired one are refused in the handshake; plaintext HTTP gets no HTTP
//! answer; the header read timeout holds before the handshake.

use integration_tests::Data;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing;
use bytes::Bytes;
use demo_services::auth::{self, Keys};
use demo_services::server::serve::{self, Limits};
use demo_services::tls::certs;
use demo_services::tls::identity::TlsDir;
use demo_services::tls::server::{TlsListener, server_config};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use integration_tests::TempDir;
use integration_tests::tls::{certs_dir, user_over_tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use tower_jwt_service_auth::mtls::PeerIdentity;

/// The longest any wait here may take: far above every configured
/// timeout, so only a server that never acts reaches it.
const BOUND: Duration = Duration::from_secs(5);

const DAY: Duration = Duration::from_secs(24 * 3600);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client configuration trusting `ca_dir`'s CA and presenting
/// `client`'s leaf from `cert_dir` (or nothing), over the given versions.
fn client_config(
    ca_dir: &Path,
    cert_dir: Option<&Path>,
    client: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_dir.join(certs::CA_CERT)).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match cert_dir {
        Some(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join(certs::cert_file(client)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.join(certs::key_file(client))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// The gateway's usual client: its leaf from `dir`, TLS 1.2 or 1.3.
fn gateway(dir: &Path) -> Arc<ClientConfig> {
    client_config(dir, Some(dir), auth::API_GATEWAY, rustls::ALL_VERSIONS, &[])
}

/// What a GET over TLS came to.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: String,
    version: rustls::ProtocolVersion,
    alpn: Option<Vec<u8>>,
}

/// GETs `path` from `addr` over TLS with `config` and HTTP/1.1 (or HTTP/2
/// if ALPN chose it), with a bearer `token` if given. Every failure, the
/// handshake's included, is an error (TLS 1.3 reports a refused client
/// certificate only when the client next reads).
async fn get(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    path: &str,
    token: Option<&str>,
) -> Result<Answer, Error> {
    timeout(BOUND, async {
        let tcp = TcpStream::connect(addr).await?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (_, conn) = tls.get_ref();
        let version = conn.protocol_version().expect("negotiated");
        let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        let mut req = Request::get(format!("https://localhost{path}"));
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let io = TokioIo::new(tls);
        let response = if alpn.as_deref() == Some(b"h2") {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            sender.send_request(req).await?
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            version,
            alpn,
        })
    })
    .await?
}

/// A bare serve loop over TLS whose `/whoami` answers the request's
/// [`PeerIdentity`] extension.
async fn whoami_server(dir: &Path, limits: Limits) -> SocketAddr {
    let app = Router::new().route(
        "/whoami",
        routing::get(
            |identity: Option<axum::Extension<PeerIdentity>>| async move {
                match identity {
                    Some(axum::Extension(id)) => id.to_string(),
                    None => "none".to_owned(),
                }
            },
        ),
    );
    let tls = TlsDir::open(dir, auth::USER_SERVICE).expect("open the TLS directory");
    let config = server_config(&tls).expect("server config");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        TlsListener::new(listener, config),
        app,
        limits,
        std::future::pending(),
    ));
    addr
}

#[tokio::test]
async fn a_client_with_a_leaf_from_the_ca_is_served_and_identified() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let user = user_over_tls(dir.path(), &data, &keys).await.0;

    let health = get(user.addr, gateway(dir.path()), "/health", None)
        .await
        .expect("health over mTLS");
    assert_eq!(health.status, StatusCode::OK, "{}", health.body);

    let token = keys
        .token(
            auth::API_GATEWAY,
            auth::USER_SERVICE,
            None,
            Duration::from_secs(60),
        )
        .unwrap();
    let user1 = get(user.addr, gateway(dir.path()), "/users/1", Some(&token))
        .await
        .expect("a user over mTLS");
    assert_eq!(user1.status, StatusCode::OK, "{}", user1.body);
    assert!(user1.body.contains("\"id\":1"), "{}", user1.body);

    let unauthenticated = get(user.addr, gateway(dir.path()), "/users/1", None)
        .await
        .expect("an answer");
    assert_eq!(
        unauthenticated.status,
        StatusCode::UNAUTHORIZED,
        "a certificate alone does not replace the token (yet)"
    );
    user.stop().await.unwrap();
}

#[tokio::test]
async fn handlers_see_the_client_certificates_spiffe_id_over_http1_and_http2() {
    let dir = certs_dir();
    let addr = whoami_server(dir.path(), Limits::default()).await;
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let config = client_config(
            dir.path(),
            Some(dir.path()),
            auth::API_GATEWAY,
            rustls::ALL_VERSIONS,
            &[alpn],
        );
        let answer = get(addr, config, "/whoami", None).await.expect("whoami");
        assert_eq!(answer.alpn.as_deref(), Some(alpn));
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "spiffe://demo.local/api-gateway");
    }
    // Another leaf of the same CA is another identity.
    let config = client_config(
        dir.path(),
        Some(dir.path()),
        auth::ORDER_SERVICE,
        rustls::ALL_VERSIONS,
        &[],
    );
    let answer = get(addr, config, "/whoami", None).await.expect("whoami");
    assert_eq!(answer.body, "spiffe://demo.local/order-service");
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_both_served() {
    let dir = certs_dir();
    let addr = whoami_server(dir.path(), Limits::default()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config(
            dir.path(),
            Some(dir.path()),
            auth::API_GATEWAY,
            &[version],
            &[],
        );
        let answer = get(addr, config, "/whoami", None).await.expect("served");
        assert_eq!(answer.version, version.version);
        assert_eq!(answer.body, "spiffe://demo.local/api-gateway");
    }
    // rustls cannot build anything older; the server offers just these.
    assert_eq!(
        demo_services::tls::server::PROTOCOL_VERSIONS
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [
            rustls::ProtocolVersion::TLSv1_3,
            rustls::ProtocolVersion::TLSv1_2
        ]
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let dir = certs_dir();
    let addr = whoami_server(dir.path(), Limits::default()).await;
    let served = get(addr, gateway(dir.path()), "/whoami", None).await;
    assert_eq!(served.expect("with its leaf").status, StatusCode::OK);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config(dir.path(), None, auth::API_GATEWAY, &[version], &[]);
        let refused = get(addr, config, "/whoami", None).await;
        assert!(refused.is_err(), "{version:?}: {refused:?}");
    }
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_even_one_of_the_same_name() {
    let dir = certs_dir();
    // Same trust domain, so the same CA name and the same SPIFFE IDs: only
    // the signature tells it apart.
    let other = certs_dir();
    let addr = whoami_server(dir.path(), Limits::default()).await;
    let served = get(addr, gateway(dir.path()), "/whoami", None).await;
    assert_eq!(served.expect("with its leaf").status, StatusCode::OK);
    let config = client_config(
        dir.path(),
        Some(other.path()),
        auth::API_GATEWAY,
        rustls::ALL_VERSIONS,
        &[],
    );
    let refused = get(addr, config, "/whoami", None).await;
    assert!(refused.is_err(), "{refused:?}");

    let elsewhere = TempDir::new();
    certs::create(
        elsewhere.path(),
        "elsewhere.test",
        DAY,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let config = client_config(
        dir.path(),
        Some(elsewhere.path()),
        auth::API_GATEWAY,
        rustls::ALL_VERSIONS,
        &[],
    );
    let refused = get(addr, config, "/whoami", None).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn an_expired_client_certificate_is_refused() {
    // Leaves issued two days ago for a minute, then renewed from the same
    // CA: the server's leaf is fresh, the old gateway leaf kept aside is
    // expired but chains to the very CA the server trusts.
    let dir = TempDir::new();
    let then = OffsetDateTime::now_utc() - time::Duration::days(2);
    certs::create(dir.path(), "demo.local", Duration::from_secs(60), then).unwrap();
    let expired = TempDir::new();
    for file in [
        certs::cert_file(auth::API_GATEWAY),
        certs::key_file(auth::API_GATEWAY),
    ] {
        std::fs::copy(dir.path().join(&file), expired.path().join(&file)).unwrap();
    }
    certs::renew(dir.path(), None, DAY, OffsetDateTime::now_utc()).unwrap();
    let addr = whoami_server(dir.path(), Limits::default()).await;

    let fresh = get(addr, gateway(dir.path()), "/whoami", None).await;
    assert_eq!(fresh.expect("the renewed leaf").status, StatusCode::OK);
    let config = client_config(
        dir.path(),
        Some(expired.path()),
        auth::API_GATEWAY,
        rustls::ALL_VERSIONS,
        &[],
    );
    let refused = get(addr, config, "/whoami", None).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn plaintext_http_on_the_tls_port_gets_no_http_answer() {
    let dir = certs_dir();
    let addr = whoami_server(dir.path(), Limits::default()).await;
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match plain.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closes the connection");
    assert!(
        !answer.windows(5).any(|w| w == b"HTTP/"),
        "an HTTP answer over plaintext: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_connection_that_never_starts_its_handshake_is_closed_after_the_header_read_timeout() {
    let dir = certs_dir();
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_head_size: serve::MAX_HEAD_SIZE,
        max_connections: 1000,
        shutdown_grace: Duration::from_secs(10),
    };
    let addr = whoami_server(dir.path(), limits).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let connected = Instant::now();
    let mut buf = [0u8; 64];
    let read = timeout(BOUND, silent.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0) | Err(_))),
        "closed without a byte: {read:?}"
    );
    assert!(
        connected.elapsed() >= limits.header_read_timeout,
        "not before the timeout: {:?}",
        connected.elapsed()
    );
}

#[tokio::test]
async fn at_the_cap_silent_sockets_on_the_tls_port_make_room_for_a_client() {
    const CAP: usize = 8;
    const EXTRA: usize = 4;
    let dir = certs_dir();
    let limits = Limits {
        max_connections: CAP,
        // Only shedding can free a place within the test's bounds.
        header_read_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let addr = whoami_server(dir.path(), limits).await;
    let mut silent = Vec::new();
    for _ in 0..CAP + EXTRA {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }

    let answer = get(addr, gateway(dir.path()), "/whoami", None)
        .await
        .expect("served at the cap");
    assert_eq!(answer.body, "spiffe://demo.local/api-gateway");

    // The sockets accepted first, still before their handshake, were
    // closed to make room.
    for stream in &mut silent[..EXTRA] {
        let mut buf = [0u8; 64];
        let read = timeout(BOUND, stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "closed: {read:?}");
    }
}
