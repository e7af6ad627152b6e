//! What opening a connection to a service over mutual TLS costs, full
//! and resumed, against opening a plaintext one.
//!
//! Run with:
//!
//! ```text
//! cargo bench -p demo-services --bench tls_handshake
//! ```
//!
//! The server side is the service's own: the configuration
//! [`server_config`] builds from a directory written by
//! [`certs::create`], accepted through [`TlsListener`] exactly as the
//! serve loop does (the TLS handshake, then reading the client's SPIFFE
//! ID from its certificate). The client is rustls on the same ring
//! provider, presenting the `api-gateway` leaf and verifying the
//! service's leaf against `ca.pem`, as a caller in the demo would.
//!
//! One iteration is one connection, from `connect` until the client has
//! read one byte the server wrote after its side of the handshake
//! finished: in TLS 1.3 the client's handshake ends before the server
//! has checked the client's certificate, and the session tickets a
//! resumption needs arrive after the server's handshake ends, so only a
//! byte from the server shows both sides are done. Client and server run
//! in one task on a current-thread runtime, so the time is the work of
//! both ends (each does about half: one signature, an ECDHE exchange and
//! the other's certificate to verify) plus the loopback system calls.
//!
//! - `tcp`: plaintext, the serve loop's plain [`TcpListener`]: the
//!   baseline every row below includes.
//! - `tls13_full` / `tls12_full`: a full handshake every time (the
//!   client keeps no sessions), ECDHE on X25519, ECDSA P-256 leaves on
//!   both sides.
//! - `tls13_resumed` / `tls12_resumed`: the client offers the session
//!   of its previous connection (a TLS 1.3 ticket, a TLS 1.2 session
//!   ID), which the server finds in rustls' default in-memory session
//!   store; no certificate is sent or verified, and the server takes the
//!   client's identity from the stored session. TLS 1.3 resumption
//!   still makes a fresh ECDHE exchange (rustls offers only
//!   `psk_dhe_ke`); TLS 1.2's session-ID resumption makes none.
//!
//! Before timing, each variant makes one connection and checks that it
//! was the kind of handshake it claims (full or resumed, at its version)
//! and that the server learned the gateway's SPIFFE ID.

use std::hint::black_box;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, measurement::WallTime};
use demo_services::server::serve::{Accept, ConnectionInfo};
use demo_services::tls::certs;
use demo_services::tls::identity::TlsDir;
use demo_services::tls::server::{TlsListener, server_config};
use rustls::HandshakeKind::{self, Full, Resumed};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Builder, Runtime};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// The service whose certificate the server presents.
const SERVER: &str = "user-service";
/// The service whose certificate the client presents.
const CLIENT: &str = "api-gateway";
/// Both services' leaves name `localhost`.
const SERVER_NAME: &str = "localhost";

/// A directory of certificates written by `certs::create`, removed on
/// drop.
struct CertDir(PathBuf);

impl CertDir {
    fn create() -> CertDir {
        let dir = std::env::temp_dir().join(format!("tls-handshake-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        certs::create(
            &dir,
            certs::DEFAULT_TRUST_DOMAIN,
            certs::DEFAULT_LEAF_TTL,
            time::OffsetDateTime::now_utc(),
        )
        .expect("certificates");
        CertDir(dir)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client presenting the gateway's leaf at `version`, with or without a
/// session cache.
fn client(dir: &CertDir, version: ProtocolVersion, resume: bool) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.0.join(certs::CA_CERT)).expect("ca.pem"))
        .expect("CA");
    let chain = vec![
        CertificateDer::from_pem_file(dir.0.join(certs::cert_file(CLIENT))).expect("client leaf"),
    ];
    let key = PrivateKeyDer::from_pem_file(dir.0.join(certs::key_file(CLIENT))).expect("key");
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        ProtocolVersion::TLSv1_3 => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12],
    };
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .expect("client certificate");
    if !resume {
        config.resumption = Resumption::disabled();
    }
    TlsConnector::from(Arc::new(config))
}

/// One connection to `listener`: the client connects, both sides finish
/// the handshake, the server writes one byte and the client reads it.
/// Returns the client's stream and what the server's handshake learned,
/// for the checks before timing.
async fn connection<A, C>(
    listener: &mut A,
    addr: SocketAddr,
    connect: &impl AsyncFn(TcpStream) -> io::Result<C>,
) -> io::Result<(C, ConnectionInfo)>
where
    A: Accept<Conn = TcpStream>,
    C: AsyncRead + Unpin,
{
    let client = async {
        let mut stream = connect(TcpStream::connect(addr).await?).await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, io::Error>(stream)
    };
    let server = async {
        let (conn, _) = listener.accept().await?;
        let (mut io, info) = listener.handshake(conn).await?;
        io.write_all(b"!").await?;
        io.flush().await?;
        Ok::<_, io::Error>(info)
    };
    tokio::try_join!(client, server)
}

/// Times `iters` connections in one `block_on`.
fn bench_connections<A, C>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    (listener, addr): (&mut A, SocketAddr),
    connect: impl AsyncFn(TcpStream) -> io::Result<C>,
) where
    A: Accept<Conn = TcpStream>,
    C: AsyncRead + Unpin,
{
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let ends = connection(listener, addr, &connect).await;
                    black_box(ends.expect("connection"));
                }
                start.elapsed()
            })
        });
    });
}

/// A TLS connection through `connector`.
fn tls_connect(
    connector: TlsConnector,
) -> impl AsyncFn(TcpStream) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(SERVER_NAME).expect("server name");
    move |tcp| connector.connect(name.clone(), tcp)
}

/// Makes one connection and checks it: the handshake `kind` at `version`,
/// and the gateway's identity on the server's side.
fn check(
    rt: &Runtime,
    listener: &mut TlsListener,
    connector: &TlsConnector,
    version: ProtocolVersion,
    kind: HandshakeKind,
) {
    let addr = listener.local_addr().expect("address");
    let (stream, info) = rt
        .block_on(connection(listener, addr, &tls_connect(connector.clone())))
        .expect("connection");
    let session = stream.get_ref().1;
    assert_eq!(session.protocol_version(), Some(version));
    assert_eq!(session.handshake_kind(), Some(kind), "{version:?}");
    let identity = info.peer_identity().expect("the server knows the client");
    assert_eq!(identity.service(), Some(CLIENT));
}

fn main() {
    let mut criterion = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let rt = Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = CertDir::create();
    let tls = TlsDir::open(&dir.0, SERVER).expect("open the TLS directory");
    let config = server_config(&tls).expect("server configuration");
    let bind = || {
        rt.block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0")
    };

    let mut group = criterion.benchmark_group("connection");
    let mut tcp = bind();
    let addr = tcp.local_addr().expect("address");
    bench_connections(&mut group, &rt, "tcp", (&mut tcp, addr), async |tcp| {
        Ok(tcp)
    });

    for (version, label) in [
        (ProtocolVersion::TLSv1_3, "tls13"),
        (ProtocolVersion::TLSv1_2, "tls12"),
    ] {
        let mut listener = TlsListener::new(bind(), config.clone());
        let addr = listener.local_addr().expect("address");

        let full = client(&dir, version, false);
        check(&rt, &mut listener, &full, version, Full);
        check(&rt, &mut listener, &full, version, Full);
        bench_connections(
            &mut group,
            &rt,
            &format!("{label}_full"),
            (&mut listener, addr),
            tls_connect(full),
        );

        let resuming = client(&dir, version, true);
        check(&rt, &mut listener, &resuming, version, Full);
        check(&rt, &mut listener, &resuming, version, Resumed);
        check(&rt, &mut listener, &resuming, version, Resumed);
        bench_connections(
            &mut group,
            &rt,
            &format!("{label}_resumed"),
            (&mut listener, addr),
            tls_connect(resuming.clone()),
        );
        // Still resuming after the timed loop: no iteration fell back to
        // a full handshake (the server's store keeps 256 sessions).
        check(&rt, &mut listener, &resuming, version, Resumed);
    }
    group.finish();
    criterion.final_summary();
}
