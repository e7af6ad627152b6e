//! Our layers' errors reach a gRPC caller as the right `tonic::Status`:
//! through tonic's own client where a server is involved, through
//! `StatusLayer` alone where the error is made in-process.

// Shared with grpc_breaker.rs, which uses the parts this file does not.
#[allow(dead_code)]
#[path = "support/grpc.rs"]
mod support;

use std::error::Error;
use std::fmt;
use std::future::pending;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::Request;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};
use tower_circuit::grpc::{MAX_MESSAGE_CHARS, StatusLayer};
use tower_circuit::timeout::{DeadlineLayer, Elapsed, Fixed, RequestTimeoutLayer};

use support::{client, grpc_request, serve};

/// Messages as raw bytes: the tests need tonic's framing, not protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_reaches_a_tonic_caller_as_unavailable_with_the_time_left() {
    let server = serve().await;
    let breaker = Breaker::new(
        "user-service",
        Config::default()
            .window(Window::Count { size: 2 })
            .minimum_calls(2)
            .open_duration(Duration::from_secs(30)),
    )
    .unwrap();
    let channel = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .layer(breaker.grpc_layer())
        .service(client::<tonic::body::Body>());
    let origin = format!("http://{}", server.addr).parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(channel, origin);
    let path = "/test.Svc/TrailersOnlyUnavailable";

    for _ in 0..2 {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary::<Bytes, Bytes, _>(
                tonic::Request::new(Bytes::new()),
                path.parse().unwrap(),
                RawCodec,
            )
            .await
            .unwrap_err();
        // The server's own answer, untouched.
        assert_eq!(
            (status.code(), status.message()),
            (Code::Unavailable, "down")
        );
    }

    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<Bytes, Bytes, _>(
            tonic::Request::new(Bytes::new()),
            path.parse().unwrap(),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.message(),
        "circuit breaker `user-service` is open; half-open in 30.000s"
    );
    let open = status
        .source()
        .and_then(|e| e.downcast_ref::<CircuitOpen>())
        .expect("the status keeps the CircuitOpen");
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(server.hits(), 2);
}

/// A service that never answers.
fn hanging() -> impl tower::Service<
    Request<()>,
    Response = http::Response<()>,
    Error = BoxError,
    Future = impl Future<Output = Result<http::Response<()>, BoxError>>,
> + Clone {
    service_fn(|_req: Request<()>| async {
        pending::<()>().await;
        Ok::<_, BoxError>(http::Response::new(()))
    })
}

#[tokio::test(start_paused = true)]
async fn the_attempts_own_timeout_is_deadline_exceeded() {
    let svc = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .layer(RequestTimeoutLayer::new(Fixed(Duration::from_secs(2))))
        .service(hanging());
    let status = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "the attempt's own timeout of 2000 ms ran out"
    );
    assert!(status.source().unwrap().is::<Elapsed>());
}

#[tokio::test(start_paused = true)]
async fn the_callers_deadline_is_deadline_exceeded_and_says_so() {
    let svc = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .layer(DeadlineLayer::new(Duration::from_secs(1)))
        .layer(RequestTimeoutLayer::new(Fixed(Duration::from_secs(2))))
        .service(hanging());
    let status = svc.oneshot(Request::new(())).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "the caller's deadline ran out (a budget of 1000 ms)"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    // A port that was just free: nothing listens on it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let svc = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .service(client());
    let status = svc
        .oneshot(grpc_request(&format!("http://{addr}/test.Svc/Ok")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("transport error: client error (Connect): "),
        "{}",
        status.message()
    );
}

/// An error that wraps another, as layers' errors do.
#[derive(Debug)]
struct Wrapped(tonic::Status);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wrapped")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[tokio::test]
async fn a_status_anywhere_in_the_chain_is_kept() {
    let svc = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .service(service_fn(|_: ()| async {
            Err::<(), BoxError>(Box::new(Wrapped(tonic::Status::not_found("no user 7"))))
        }));
    let status = svc.oneshot(()).await.unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::NotFound, "no user 7")
    );
    assert!(status.source().unwrap().is::<Wrapped>());
}

#[tokio::test]
async fn other_errors_are_unknown_with_their_text_escaped_and_bounded() {
    let svc = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .service(service_fn(|long: bool| async move {
            let text = if long {
                "x".repeat(MAX_MESSAGE_CHARS * 4)
            } else {
                "bad name \"a\r\nb\u{1b}[2J\"".to_owned()
            };
            Err::<(), BoxError>(text.into())
        }));
    let status = svc.clone().oneshot(false).await.unwrap_err();
    assert_eq!(status.code(), Code::Unknown);
    assert_eq!(status.message(), "bad name \"a\\r\\nb\\u{1b}[2J\"");

    let status = svc.oneshot(true).await.unwrap_err();
    assert_eq!(status.message().chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(status.message().ends_with('…'));
}
