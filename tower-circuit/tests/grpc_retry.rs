//! Retry for gRPC calls (feature `grpc`): the method table decides what
//! may be retried, `UNAVAILABLE` is retried and `DEADLINE_EXCEEDED` is
//! not, the server's pushback is a floor, and the request body, buffered
//! once by `ReplayLayer`, reaches the server byte for byte on every
//! attempt. The attempts go to a real HTTP/2 server on 127.0.0.1:0, which
//! reads each body; the pushback timing runs in process on the paused
//! clock.

#[path = "support/h2.rs"]
mod h2;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::grpc::replay::{
    BodyError, NotReplayable, ReplayBody, ReplayLayer, RequestTooLarge,
};
use tower_circuit::grpc::retry::{GrpcMethods, GrpcRetryClassifier, MethodKind};
use tower_circuit::retry::{Backoff, RetryLayer};

const GET_USER: &str = "/user.UserService/GetUser";
const UPDATE_USER: &str = "/user.UserService/UpdateUser";

fn methods() -> GrpcMethods {
    GrpcMethods::new()
        .idempotent(GET_USER)
        .method(UPDATE_USER, MethodKind::Unary, false)
}

/// A request body that is not `Clone`: its chunks, one frame each, then
/// optionally an error. Its size is unknown in advance, as a stream's is.
struct Chunks {
    chunks: VecDeque<Bytes>,
    fail: bool,
}

impl Chunks {
    fn new(chunks: &[&'static [u8]]) -> Self {
        Chunks {
            chunks: chunks.iter().map(|c| Bytes::from_static(c)).collect(),
            fail: false,
        }
    }

    fn then_fail(mut self) -> Self {
        self.fail = true;
        self
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if std::mem::take(&mut self.fail) {
            return Poll::Ready(Some(Err("the caller's stream broke".into())));
        }
        Poll::Ready(None)
    }
}

/// A gRPC request for `path` with `body`.
fn call<B>(path: &str, body: B) -> Request<B> {
    Request::post(format!("http://127.0.0.1{path}"))
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// A trailers-only gRPC answer with `status` (and extra headers).
fn status_only<B: Default>(
    status: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from_static(status));
    for (name, value) in extra {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    res
}

/// What the server received: each attempt's path and whole body.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A real HTTP/2 server that reads each request's body whole, records it,
/// and answers the `n`-th request (from 0) with `answers[n]` (the last
/// repeats): a `grpc-status` in the headers, or `"ok"` for a message.
async fn server(answers: &'static [&'static str]) -> (std::net::SocketAddr, Received) {
    let received = Received::default();
    let log = received.clone();
    let addr = h2::serve(service_fn(move |req: Request<Incoming>| {
        let log = log.clone();
        async move {
            let path = req.uri().path().to_owned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let n = {
                let mut log = log.lock().unwrap();
                log.push((path, body));
                log.len() - 1
            };
            let answer = answers[n.min(answers.len() - 1)];
            if answer == "ok" {
                let mut res = Response::new(Full::new(Bytes::from_static(b"user 7")));
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                return Ok::<_, Infallible>(res);
            }
            Ok(status_only(answer, &[]))
        }
    }))
    .await;
    (addr, received)
}

/// The client stack under test, over an HTTP/2 connection to `addr`.
async fn client(
    addr: std::net::SocketAddr,
    replay: ReplayLayer,
) -> impl Service<Request<Chunks>, Response = Response<Incoming>, Error = BoxError> {
    let send = h2::connect::<ReplayBody<Chunks>>(addr).await;
    let retry = RetryLayer::builder("user-service")
        .backoff(Backoff::default().base(Duration::from_millis(1)))
        .no_budget()
        .idempotency(methods())
        .build()
        .unwrap()
        .classifier(GrpcRetryClassifier);
    ServiceBuilder::new()
        .layer(replay)
        .layer(retry)
        .service(service_fn(move |req: Request<ReplayBody<Chunks>>| {
            let mut send = send.clone();
            async move { send.send_request(req).await }
        }))
}

fn header<'a, B>(res: &'a Response<B>, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_idempotent_unary_call_is_retried_through_unavailable_with_its_body_replayed() {
    let (addr, received) = server(&["14", "14", "ok"]).await;
    let client = client(addr, ReplayLayer::new(methods())).await;
    // A gRPC frame (flag, length, message) sent in three chunks.
    let body = Chunks::new(&[b"\x00\x00\x00", b"\x00\x02", b"\x08\x07"]);

    let res = client.oneshot(call(GET_USER, body)).await.unwrap();

    assert_eq!(
        header(&res, "grpc-status"),
        None,
        "the third attempt's answer"
    );
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "user 7"
    );
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 3);
    for (path, body) in received.iter() {
        assert_eq!(path, GET_USER);
        assert_eq!(&body[..], b"\x00\x00\x00\x00\x02\x08\x07", "byte for byte");
    }
}

#[tokio::test]
async fn a_non_idempotent_method_is_not_retried() {
    let (addr, received) = server(&["14", "ok"]).await;
    let client = client(addr, ReplayLayer::new(methods())).await;
    let body = Chunks::new(&[b"\x00\x00\x00\x00\x01", b"\x08"]);

    let res = client.oneshot(call(UPDATE_USER, body)).await.unwrap();

    assert_eq!(header(&res, "grpc-status"), Some("14"));
    let received = received.lock().unwrap();
    assert_eq!(received.len(), 1, "sent once");
    assert_eq!(
        &received[0].1[..],
        b"\x00\x00\x00\x00\x01\x08",
        "streamed as it was"
    );
}

#[tokio::test]
async fn deadline_exceeded_from_the_server_is_not_retried() {
    let (addr, received) = server(&["4", "ok"]).await;
    let client = client(addr, ReplayLayer::new(methods())).await;

    let res = client
        .oneshot(call(GET_USER, Chunks::new(&[b"\x00\x00\x00\x00\x00"])))
        .await
        .unwrap();

    assert_eq!(header(&res, "grpc-status"), Some("4"));
    assert_eq!(received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_over_the_replay_limit_is_refused_without_sending() {
    let (addr, received) = server(&["ok"]).await;
    let client = client(addr, ReplayLayer::new(methods()).max_body(8)).await;

    // Size unknown in advance: refused once the ninth byte arrives.
    let body = Chunks::new(&[b"\x00\x00\x00\x00\x04", b"\x01\x02\x03", b"\x04"]);
    let err = client.oneshot(call(GET_USER, body)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<RequestTooLarge>().unwrap().limit(), 8);

    // Exactly at the limit: sent.
    let client = self::client(addr, ReplayLayer::new(methods()).max_body(8)).await;
    let body = Chunks::new(&[b"\x00\x00\x00\x00\x03", b"\x01\x02\x03"]);
    client.oneshot(call(GET_USER, body)).await.unwrap();
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "only the one within the limit"
    );
}

#[tokio::test]
async fn a_body_known_to_be_too_large_is_refused_before_it_is_read() {
    let calls = Arc::new(Mutex::new(0));
    let seen = calls.clone();
    let client = ReplayLayer::new(methods()).max_body(8).layer(service_fn(
        move |_req: Request<ReplayBody<Full<Bytes>>>| {
            *seen.lock().unwrap() += 1;
            async { Ok::<_, BoxError>(Response::new(())) }
        },
    ));
    let body = Full::new(Bytes::from_static(&[0; 9]));
    let err = client.oneshot(call(GET_USER, body)).await.unwrap_err();
    assert!(err.is::<RequestTooLarge>());
    assert_eq!(*calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_request_body_that_fails_while_buffered_sends_nothing() {
    let (addr, received) = server(&["ok"]).await;
    let client = client(addr, ReplayLayer::new(methods())).await;
    let body = Chunks::new(&[b"\x00\x00\x00"]).then_fail();

    let err = client.oneshot(call(GET_USER, body)).await.unwrap_err();

    let err = err.downcast_ref::<BodyError>().unwrap();
    assert!(std::error::Error::source(err).is_some());
    assert_eq!(received.lock().unwrap().len(), 0);
}

#[tokio::test]
async fn a_copy_of_a_streamed_body_fails_rather_than_send_a_partial_request() {
    let client = ReplayLayer::new(methods()).layer(service_fn(
        |req: Request<ReplayBody<Chunks>>| async move {
            let original = req.into_body();
            assert!(!original.is_replayable());
            let copy = original.clone();
            assert!(
                !copy.is_end_stream(),
                "the copy must not pass for an empty body"
            );
            let copy_err = copy.collect().await.unwrap_err();
            assert!(copy_err.is::<NotReplayable>(), "{copy_err}");
            let bytes = original.collect().await?.to_bytes();
            Ok::<_, BoxError>(Response::new(bytes))
        },
    ));
    let res = client
        .oneshot(call(UPDATE_USER, Chunks::new(&[b"abc", b"def"])))
        .await
        .unwrap();
    assert_eq!(res.into_body(), "abcdef", "the original streams as it came");
}

/// A client whose server answers with the given `grpc-status` and
/// pushback on the first attempt, then a message; records attempt times.
async fn pushback_run(pushback: &'static str) -> Vec<Duration> {
    let start = Instant::now();
    let times = Arc::new(Mutex::new(Vec::new()));
    let seen = times.clone();
    let retry = RetryLayer::builder("user-service")
        .backoff(Backoff::default().base(Duration::from_millis(1)))
        .no_budget()
        .idempotency(methods())
        .build()
        .unwrap()
        .classifier(GrpcRetryClassifier);
    let client = ServiceBuilder::new()
        .layer(ReplayLayer::new(methods()))
        .layer(retry)
        .service(service_fn(move |_req: Request<ReplayBody<Chunks>>| {
            let mut times = seen.lock().unwrap();
            times.push(start.elapsed());
            let first = times.len() == 1;
            async move {
                if first {
                    return Ok::<_, BoxError>(status_only::<()>(
                        "14",
                        &[("grpc-retry-pushback-ms", pushback)],
                    ));
                }
                Ok(Response::new(()))
            }
        }));
    client
        .oneshot(call(GET_USER, Chunks::new(&[b"\x00\x00\x00\x00\x00"])))
        .await
        .unwrap();
    times.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn the_servers_pushback_is_waited_for_and_a_negative_one_stops_retries() {
    let times = pushback_run("1500").await;
    assert_eq!(times.len(), 2);
    let pause = times[1] - times[0];
    assert!(pause >= Duration::from_millis(1500), "{pause:?}");
    assert!(pause < Duration::from_millis(1510), "{pause:?}");

    assert_eq!(pushback_run("-1").await.len(), 1, "negative: do not retry");
    assert_eq!(
        pushback_run("soon").await.len(),
        1,
        "malformed: do not retry"
    );
}
