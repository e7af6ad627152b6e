//! Certificate rotation and what a TLS service reports, over real
//! sockets on 127.0.0.1: renewing the leaves while a client keeps one
//! connection busy (nothing fails on it, new connections get the new
//! certificate); a broken renewal keeps the old certificate and is
//! counted; `/health` shows the certificate; `/metrics` counts
//! handshakes and their failures by reason, a handshake never started
//! as a timeout.

use integration_tests::Data;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use demo_services::auth::{self, Keys};
use demo_services::fault::Faults;
use demo_services::harness::{self};
use demo_services::tls::certs;
use demo_services::tls::identity::TlsDir;
use demo_services::user;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use integration_tests::tls::{certs_dir, user_over_tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// The longest any wait here may take: the reload task polls the files
/// every second, so a renewal is served well within it.
const BOUND: Duration = Duration::from_secs(10);

/// The pause between two looks at a condition being waited for.
const RECHECK: Duration = Duration::from_millis(50);

const DAY: Duration = Duration::from_secs(24 * 3600);

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A client trusting `ca_dir`'s CA and presenting the gateway's leaf
/// from `cert_dir`, or nothing. It never resumes a session: a resumed
/// one carries the certificate of the session it resumes, and each
/// connection here must see what the server presents now.
fn client(ca_dir: &Path, cert_dir: Option<&Path>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(cert(ca_dir, certs::CA_CERT)).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match cert_dir {
        Some(dir) => {
            let chain = vec![cert(dir, &certs::cert_file(auth::API_GATEWAY))];
            let key =
                PrivateKeyDer::from_pem_file(dir.join(certs::key_file(auth::API_GATEWAY))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// The first certificate of a PEM file in `dir`.
fn cert(dir: &Path, file: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join(file)).unwrap()
}

/// One HTTP/1.1 connection over TLS, and what the server presented on it.
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    server_cert: CertificateDer<'static>,
    local: SocketAddr,
}

async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Conn, Error> {
    timeout(BOUND, async {
        let tcp = TcpStream::connect(addr).await?;
        let local = tcp.local_addr()?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("no certificate")?[0]
            .clone();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(Conn {
            sender,
            server_cert,
            local,
        })
    })
    .await?
}

impl Conn {
    /// GETs `path` on this connection, with a bearer `token` if given.
    async fn get(
        &mut self,
        path: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, String), Error> {
        timeout(BOUND, async {
            let mut req = Request::get(path).header("host", "localhost");
            if let Some(token) = token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            self.sender.ready().await?;
            let response = self.sender.send_request(req.body(Empty::new())?).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
        .await?
    }
}

/// `/health` on a new connection, as JSON.
async fn health(addr: SocketAddr, config: Arc<ClientConfig>) -> serde_json::Value {
    let (status, body) = connect(addr, config)
        .await
        .expect("connect")
        .get("/health", None)
        .await
        .expect("health");
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of the sample `series` (name and labels) in `/metrics`,
/// scraped on a new connection; 0 when absent.
async fn metric(addr: SocketAddr, config: Arc<ClientConfig>, series: &str) -> f64 {
    let (_, text) = connect(addr, config)
        .await
        .expect("connect")
        .get("/metrics", None)
        .await
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// Waits, bounded, until `series` reads `value`.
async fn wait_for_metric(addr: SocketAddr, config: &Arc<ClientConfig>, series: &str, value: f64) {
    let reached = timeout(BOUND, async {
        while metric(addr, config.clone(), series).await != value {
            tokio::time::sleep(RECHECK).await;
        }
    })
    .await;
    assert!(reached.is_ok(), "{series} never read {value}");
}

#[tokio::test]
async fn renewing_under_load_drops_nothing_and_new_connections_get_the_new_certificate() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let service = user_over_tls(dir.path(), &data, &keys).await.0;
    let gateway = client(dir.path(), Some(dir.path()));
    let token = keys
        .token(
            auth::API_GATEWAY,
            auth::USER_SERVICE,
            None,
            Duration::from_secs(600),
        )
        .unwrap();
    let old = cert(dir.path(), &certs::cert_file(auth::USER_SERVICE));

    // One connection, kept busy with GET /users/1 until told to stop;
    // any failure on it ends the loop with an error.
    let mut busy = connect(service.addr, gateway.clone()).await.unwrap();
    assert_eq!(busy.server_cert, old);
    let local = busy.local;
    let served = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn({
        let served = served.clone();
        let token = token.clone();
        async move {
            while !*stopped.borrow() {
                let (status, body) = busy.get("/users/1", Some(&token)).await?;
                if status != StatusCode::OK {
                    return Err::<Conn, Error>(format!("{status}: {body}").into());
                }
                served.fetch_add(1, Ordering::Relaxed);
            }
            Ok(busy)
        }
    });
    let requests_after = |n: u64| {
        let served = served.clone();
        async move {
            let reached = timeout(BOUND, async {
                while served.load(Ordering::Relaxed) < n {
                    tokio::time::sleep(RECHECK).await;
                }
            })
            .await;
            assert!(
                reached.is_ok(),
                "the busy connection stalled below {n} requests"
            );
        }
    };
    requests_after(20).await;

    let before = health(service.addr, gateway.clone()).await;
    certs::renew(dir.path(), None, DAY, OffsetDateTime::now_utc()).unwrap();
    let new = cert(dir.path(), &certs::cert_file(auth::USER_SERVICE));
    assert_ne!(new, old);
    let renewed = timeout(BOUND, async {
        loop {
            let conn = connect(service.addr, gateway.clone()).await.unwrap();
            if conn.server_cert == new {
                return conn;
            }
            tokio::time::sleep(RECHECK).await;
        }
    })
    .await
    .expect("a new connection gets the renewed certificate");
    drop(renewed);

    // The busy connection goes on after the new certificate is served.
    requests_after(served.load(Ordering::Relaxed) + 20).await;
    stop.send(true).unwrap();
    let mut busy = load
        .await
        .unwrap()
        .expect("every request on the busy connection succeeded");
    assert_eq!(busy.local, local, "still the connection it opened");
    assert_eq!(busy.server_cert, old, "made with the old certificate");
    let (status, _) = busy.get("/users/1", Some(&token)).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let after = health(service.addr, gateway.clone()).await;
    assert_ne!(after["tls"]["serial"], before["tls"]["serial"], "{after}");
    assert_eq!(
        metric(
            service.addr,
            gateway.clone(),
            "tls_certificate_reloads_total{result=\"renewed\"}"
        )
        .await,
        1.0
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_broken_renewal_keeps_the_old_certificate_and_is_counted() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let service = user_over_tls(dir.path(), &data, &keys).await.0;
    let gateway = client(dir.path(), Some(dir.path()));
    let old = cert(dir.path(), &certs::cert_file(auth::USER_SERVICE));
    let before = health(service.addr, gateway.clone()).await;

    std::fs::write(
        dir.path().join(certs::cert_file(auth::USER_SERVICE)),
        b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    wait_for_metric(
        service.addr,
        &gateway,
        "tls_certificate_reloads_total{result=\"failed\"}",
        1.0,
    )
    .await;

    let conn = connect(service.addr, gateway.clone()).await.unwrap();
    assert_eq!(conn.server_cert, old, "still the old certificate");
    let after = health(service.addr, gateway.clone()).await;
    assert_eq!(after["tls"]["serial"], before["tls"]["serial"]);
    service.stop().await.unwrap();
}

#[tokio::test]
async fn health_shows_the_certificate_and_only_with_tls() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let service = user_over_tls(dir.path(), &data, &keys).await.0;
    let body = health(service.addr, client(dir.path(), Some(dir.path()))).await;
    let tls = &body["tls"];
    assert_eq!(
        tls["spiffeId"], "spiffe://demo.local/user-service",
        "{body}"
    );
    let serial = tls["serial"].as_str().expect("a serial");
    assert!(
        !serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
        "{serial}"
    );
    let left = tls["expiresInSeconds"].as_i64().expect("seconds to expiry");
    assert!(
        (DAY.as_secs() as i64 - 120..=DAY.as_secs() as i64).contains(&left),
        "{left}"
    );
    let not_after = tls["notAfter"].as_str().expect("notAfter");
    let parsed = OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let in_a_day = OffsetDateTime::now_utc() + DAY;
    assert!(
        (parsed - in_a_day).abs() < time::Duration::minutes(2),
        "{not_after}"
    );
    service.stop().await.unwrap();

    let plain_data = Data::new().await;
    let (plain, _) = integration_tests::start_user(&plain_data, &keys, None).await;
    let answer = demo_services::harness::Http::default()
        .get(&format!("{}/health", plain.url()), "")
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.json.get("tls").is_none(), "{}", answer.json);
    plain.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_handshakes_and_failures_by_reason() {
    let dir = certs_dir();
    let other = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let service = user_over_tls(dir.path(), &data, &keys).await.0;
    let addr = service.addr;
    let gateway = client(dir.path(), Some(dir.path()));

    // No client certificate, over TLS 1.3 (refused when the client next
    // reads) and 1.2 alike.
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut roots = RootCertStore::empty();
        roots.add(cert(dir.path(), certs::CA_CERT)).unwrap();
        let config =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let refused = async {
            connect(addr, Arc::new(config))
                .await?
                .get("/health", None)
                .await
        };
        assert!(refused.await.is_err());
    }
    // A leaf of another CA of the same name.
    let refused = async {
        connect(addr, client(dir.path(), Some(other.path())))
            .await?
            .get("/health", None)
            .await
    };
    assert!(refused.await.is_err());
    // Plaintext HTTP.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = timeout(BOUND, plain.read_to_end(&mut rest))
        .await
        .expect("closed");

    let failures = "tls_handshake_failures_total{reason=";
    wait_for_metric(
        addr,
        &gateway,
        &format!("{failures}\"no_certificate\"}}"),
        2.0,
    )
    .await;
    wait_for_metric(addr, &gateway, &format!("{failures}\"unknown_ca\"}}"), 1.0).await;
    wait_for_metric(addr, &gateway, &format!("{failures}\"not_tls\"}}"), 1.0).await;

    // Every scrape above was a handshake of its own: counting them, this
    // one included, gives the total.
    let scrapes = metric(addr, gateway.clone(), "tls_handshakes_total").await;
    assert_eq!(
        metric(addr, gateway.clone(), "tls_handshakes_total").await,
        scrapes + 1.0
    );
    assert!(scrapes >= 3.0);
    let left = metric(addr, gateway.clone(), "tls_certificate_expiry_seconds").await;
    assert!(
        (DAY.as_secs_f64() - 120.0..=DAY.as_secs_f64()).contains(&left),
        "{left}"
    );
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_handshake_never_started_is_counted_as_a_timeout() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let mut state = user::State::open(&data.database(), &keys, Faults::default())
        .await
        .expect("open the user service");
    state.server.tls = Some(TlsDir::open(dir.path(), auth::USER_SERVICE).unwrap());
    state.server.limits.header_read_timeout = Duration::from_millis(300);
    let service = harness::start(state, None).await.expect("start");
    let gateway = client(dir.path(), Some(dir.path()));

    // Connects and sends nothing: closed at the header read timeout.
    let mut silent = TcpStream::connect(service.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = timeout(BOUND, silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "{closed:?}");

    let reason = "tls_handshake_failures_total{reason=";
    wait_for_metric(
        service.addr,
        &gateway,
        &format!("{reason}\"timeout\"}}"),
        1.0,
    )
    .await;
    assert_eq!(
        metric(
            service.addr,
            gateway.clone(),
            &format!("{reason}\"closed\"}}")
        )
        .await,
        0.0
    );
    service.stop().await.unwrap();
}
