//! The serve loop's connection limits, over real sockets on 127.0.0.1:
//! header read and idle timeouts, the request head limit, shedding idle
//! connections at the cap, and shutdown that does not wait for connections
//! that never sent a request.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use demo_services::server::serve::{self, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

/// The longest any wait in these tests may take: far above every
/// configured timeout, so only a server that never acts reaches it.
const BOUND: Duration = Duration::from_secs(5);

/// Timeouts short enough for tests, a roomy cap.
fn limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        max_head_size: serve::MAX_HEAD_SIZE,
        max_connections: 1000,
        shutdown_grace: Duration::from_secs(10),
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(limits: Limits) -> Server {
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .route("/big", get(|| async { vec![b'x'; BIG] }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Begins shutdown and returns how long the server took to stop.
    async fn stop(mut self) -> Duration {
        let began = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the server stops within its grace")
            .unwrap()
            .unwrap();
        began.elapsed()
    }
}

/// Waits for the server to close `stream` (end of file or a reset),
/// discarding what it sends; panics after [`BOUND`].
async fn closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
}

/// Reads one response to a GET of `/` (body "ok"): returns its status line.
async fn response(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(BOUND, async {
        while !answer.ends_with(b"\r\n\r\nok") {
            let n = stream.read(&mut buf).await.expect("read the response");
            assert!(n > 0, "closed before the response was complete");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response");
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: test\r\n\r\n";

/// The size of `/big`'s body: far more than the socket buffers on both
/// sides hold, so a peer that does not read keeps the request busy.
const BIG: usize = 32 << 20;

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let server = Server::start(limits()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let connected = Instant::now();
    closed(&mut silent).await;
    assert!(
        connected.elapsed() >= limits().header_read_timeout,
        "not before the timeout: {:?}",
        connected.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_head_trickled_byte_by_byte_is_closed_after_the_header_read_timeout() {
    let server = Server::start(limits()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    let connected = Instant::now();
    let (mut read, mut write) = slow.split();
    // A header line every 20 ms, never the blank line that ends the head:
    // the deadline runs from the accept, so sending keeps nothing alive.
    let trickle = async {
        let _ = write.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n").await;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..250 {
            tick.tick().await;
            if write.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
        }
    };
    let eof = async {
        let mut buf = [0u8; 64];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(BOUND, async {
        tokio::select! {
            () = eof => {}
            () = trickle => panic!("the connection stayed open while the head trickled in"),
        }
    })
    .await
    .expect("the server closes the connection");
    assert!(connected.elapsed() >= limits().header_read_timeout);
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_answered_431() {
    let server = Server::start(limits()).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(serve::MAX_HEAD_SIZE + 1024)
    );
    let (mut read, mut write) = stream.split();
    let send = async {
        // The server may close before it has read it all.
        let _ = write.write_all(big.as_bytes()).await;
    };
    let receive = async {
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return answer,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let ((), answer) = timeout(BOUND, async { tokio::join!(send, receive) })
        .await
        .expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "431 Request Header Fields Too Large, got {answer:?}"
    );

    // A head just under the limit is served.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let fits = format!(
        "GET / HTTP/1.1\r\nHost: test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(serve::MAX_HEAD_SIZE - 1024)
    );
    stream.write_all(fits.as_bytes()).await.unwrap();
    assert_eq!(response(&mut stream).await, "HTTP/1.1 200 OK");
    server.stop().await;
}

#[tokio::test]
async fn at_the_cap_the_oldest_silent_connections_make_room_for_a_client() {
    const CAP: usize = 32;
    const EXTRA: usize = 8;
    let server = Server::start(Limits {
        max_connections: CAP,
        // Only shedding can free a place within the test's bounds.
        header_read_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..CAP + EXTRA {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }

    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(GET).await.unwrap();
    assert_eq!(response(&mut client).await, "HTTP/1.1 200 OK");

    // The connections accepted first were closed to make room.
    for stream in &mut silent[..EXTRA] {
        closed(stream).await;
    }
    drop(silent);
    server.stop().await;
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_the_idle_timeout_is_closed() {
    let idle = Duration::from_millis(500);
    let server = Server::start(Limits {
        idle_timeout: idle,
        // Far above the idle timeout: only the idle timeout can close it.
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert_eq!(response(&mut stream).await, "HTTP/1.1 200 OK");
    // Kept alive: a second request on the same connection is served.
    stream.write_all(GET).await.unwrap();
    assert_eq!(response(&mut stream).await, "HTTP/1.1 200 OK");
    let answered = Instant::now();
    closed(&mut stream).await;
    assert!(
        answered.elapsed() >= idle,
        "not before the idle timeout: {:?}",
        answered.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_without_a_request() {
    let server = Server::start(Limits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        ..limits()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut half_sent = TcpStream::connect(server.addr).await.unwrap();
    half_sent
        .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(server.addr).await.unwrap();
    kept_alive.write_all(GET).await.unwrap();
    assert_eq!(response(&mut kept_alive).await, "HTTP/1.1 200 OK");

    let took = server.stop().await;
    assert!(
        took < Duration::from_secs(5),
        "shutdown waited {took:?}, not for its 10 s grace"
    );
    for stream in [&mut silent, &mut half_sent, &mut kept_alive] {
        closed(stream).await;
    }
}

#[tokio::test]
async fn limits_that_cannot_be_enforced_refuse_to_serve() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = serve::serve(
        listener,
        Router::new(),
        Limits {
            max_connections: 0,
            ..limits()
        },
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("connection cap"), "{err}");
}

/// A response the app has handed over whole is the end of the request,
/// even while it sits unread in the socket buffers: the connection then
/// waits for its next head, and a peer that never reads is closed by the
/// idle timeout, so slow readers cannot hold places under the cap.
#[tokio::test]
async fn a_peer_that_does_not_read_its_response_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(200);
    let server = Server::start(Limits {
        idle_timeout: idle,
        // Far above: only the idle timeout can close it.
        header_read_timeout: Duration::from_secs(30),
        ..limits()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n")
        .await
        .unwrap();
    // Not reading is the behaviour under test: the time must pass with the
    // response stuck in the socket buffers. Five times the limit, so that a
    // busy machine cannot make the server's timer look late.
    tokio::time::sleep(idle * 5).await;
    let mut read = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read += n,
            }
        }
    })
    .await
    .expect("the server closed the connection");
    assert!(
        read < BIG,
        "closed before the whole body was sent: {read} of {BIG} bytes"
    );
    server.stop().await;
}

/// What every HTTP/2 connection opens with, then an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A HEADERS frame on stream 1 for `GET /` over http, ending the stream:
/// three indexed fields of HPACK's static table (`:method GET` = 2,
/// `:scheme http` = 6, `:path /` = 4), flags END_STREAM | END_HEADERS.
const H2_GET: &[u8] = b"\x00\x00\x03\x01\x05\x00\x00\x00\x01\x82\x86\x84";

/// Reads HTTP/2 frames until one of type DATA on stream 1 with END_STREAM
/// arrives; returns the DATA payloads of stream 1.
async fn h2_response(stream: &mut TcpStream) -> Vec<u8> {
    let mut body = Vec::new();
    timeout(BOUND, async {
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.expect("a frame header");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            stream
                .read_exact(&mut payload)
                .await
                .expect("a frame payload");
            if kind == 0 && id == 1 {
                body.extend_from_slice(&payload);
                if flags & 0x1 != 0 {
                    return;
                }
            }
        }
    })
    .await
    .expect("a response on stream 1");
    body
}

#[tokio::test]
async fn http1_and_http2_are_served_on_the_same_listener() {
    let server = Server::start(limits()).await;

    let mut h1 = TcpStream::connect(server.addr).await.unwrap();
    h1.write_all(GET).await.unwrap();
    assert_eq!(response(&mut h1).await, "HTTP/1.1 200 OK");

    let mut h2 = TcpStream::connect(server.addr).await.unwrap();
    h2.write_all(H2_PREFACE).await.unwrap();
    h2.write_all(H2_GET).await.unwrap();
    assert_eq!(h2_response(&mut h2).await, b"ok");

    // And through a client we did not write: hyper's, with prior knowledge.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let res = timeout(
        BOUND,
        client.get(format!("http://{}/", server.addr).parse().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(res.version(), http::Version::HTTP_2);
    assert_eq!(res.status(), http::StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_sends_only_its_preface_is_closed_after_the_header_read_timeout() {
    let server = Server::start(limits()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    silent.write_all(H2_PREFACE).await.unwrap();
    let connected = Instant::now();
    closed(&mut silent).await;
    assert!(
        connected.elapsed() >= limits().header_read_timeout,
        "not before the timeout: {:?}",
        connected.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_idle_after_its_streams_is_closed_after_the_idle_timeout() {
    let server = Server::start(limits()).await;
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(H2_PREFACE).await.unwrap();
    idle.write_all(H2_GET).await.unwrap();
    assert_eq!(h2_response(&mut idle).await, b"ok");
    let answered = Instant::now();
    closed(&mut idle).await;
    assert!(
        answered.elapsed() >= limits().idle_timeout - Duration::from_millis(50),
        "not before the idle timeout: {:?}",
        answered.elapsed()
    );
    server.stop().await;
}
