//! Deadlines for gRPC calls: the server answers in gRPC (never the JSON
//! `504`), bounds the whole response stream, and the client writes
//! `grpc-timeout`. The answers that only mean something on the wire
//! (trailers-only headers, trailers after a stream, the handler's stream
//! dropped) go through a real HTTP/2 server; the rest run in process on
//! the paused clock.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use tokio::sync::oneshot;
use tokio::time::{Sleep, sleep};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_circuit::timeout::{
    BUDGET_HEADER, Deadline, DeadlineBody, Elapsed, GRPC_TIMEOUT_HEADER, PropagateDeadlineLayer,
    ServerDeadlineLayer,
};

use crate::h2;

/// A handler's response body: `first` at once, then after `pause`, `last`
/// (a data or trailers frame) and the end. Holds `guard` until dropped,
/// so a test can see the body go.
struct Script {
    first: Option<Bytes>,
    pause: Pin<Box<Sleep>>,
    last: Option<Frame<Bytes>>,
    _guard: Option<oneshot::Sender<()>>,
}

impl Script {
    fn new(first: &'static str, pause: Duration, last: Frame<Bytes>) -> Self {
        Script {
            first: Some(Bytes::from_static(first.as_bytes())),
            pause: Box::pin(sleep(pause)),
            last: Some(last),
            _guard: None,
        }
    }

    fn guarded(mut self, guard: oneshot::Sender<()>) -> Self {
        self._guard = Some(guard);
        self
    }
}

impl Body for Script {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.last.is_none() {
            return Poll::Ready(None);
        }
        std::task::ready!(self.pause.as_mut().poll(cx));
        Poll::Ready(self.last.take().map(Ok))
    }
}

fn grpc_status(code: &'static str) -> Frame<Bytes> {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    Frame::trailers(trailers)
}

fn grpc_request<B>(body: B) -> Request<B> {
    Request::post("/user.UserService/ListUsers")
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap()
}

/// Everything a body sends: its data, and its trailers if any.
async fn drain<B: Body<Data = Bytes>>(body: B) -> (String, Option<HeaderMap>)
where
    B::Error: std::fmt::Debug,
{
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    let data = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
    (data, trailers)
}

/// `future`'s output, or a failed test rather than a hung one if the
/// server never ends what it should have ended.
async fn within<F: std::future::Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the server should have ended this long ago")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

// === the server, on the wire ===

#[tokio::test]
async fn a_grpc_call_past_its_grpc_timeout_gets_deadline_exceeded_in_the_headers() {
    let (guard, dropped) = oneshot::channel::<()>();
    let guard = Arc::new(std::sync::Mutex::new(Some(guard)));
    let handler = service_fn(move |_req: Request<hyper::body::Incoming>| {
        let guard = guard.lock().unwrap().take();
        async move {
            // Never answers; the guard goes when the layer drops the handler.
            let _guard = guard;
            std::future::pending::<()>().await;
            Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
        }
    });
    let addr = h2::serve(ServerDeadlineLayer::new(Duration::from_secs(30)).layer(handler)).await;
    let mut client = h2::connect(addr).await;
    let mut req = grpc_request(Empty::<Bytes>::new());
    req.headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("100m"));

    let res = within(client.send_request(req)).await.unwrap();

    assert_eq!(res.status(), StatusCode::OK, "gRPC answers are HTTP 200");
    let headers = res.headers().clone();
    assert_eq!(header(&headers, "content-type"), Some("application/grpc"));
    assert_eq!(header(&headers, "grpc-status"), Some("4"));
    assert!(
        header(&headers, "grpc-message").is_some_and(|m| m.contains("deadline exceeded")),
        "{headers:?}"
    );
    assert_eq!(
        header(&headers, "x-request-budget-ms"),
        Some("0"),
        "the caller's budget"
    );
    let (data, trailers) = drain(res.into_body()).await;
    assert_eq!(data, "", "trailers-only: no body, no JSON");
    assert_eq!(trailers, None);
    assert!(within(dropped).await.is_err(), "the handler was dropped");
}

#[tokio::test]
async fn a_stream_still_sending_at_the_deadline_ends_with_deadline_exceeded_trailers() {
    let (guard, dropped) = oneshot::channel::<()>();
    let guard = Arc::new(std::sync::Mutex::new(Some(guard)));
    let handler = service_fn(move |_req: Request<hyper::body::Incoming>| {
        let guard = guard.lock().unwrap().take().unwrap();
        async move {
            // One message at once, then the stream would go on for an hour.
            let body = Script::new("message 1", Duration::from_secs(3600), grpc_status("0"))
                .guarded(guard);
            let mut res = Response::new(body);
            res.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            Ok::<_, Infallible>(res)
        }
    });
    let addr = h2::serve(ServerDeadlineLayer::new(Duration::from_secs(30)).layer(handler)).await;
    let mut client = h2::connect(addr).await;
    let mut req = grpc_request(Empty::<Bytes>::new());
    req.headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("200m"));

    let res = within(client.send_request(req)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "grpc-status"),
        None,
        "not trailers-only"
    );
    let (data, trailers) = within(drain(res.into_body())).await;

    assert_eq!(data, "message 1");
    let trailers = trailers.expect("the server ended the stream with trailers");
    assert_eq!(header(&trailers, "grpc-status"), Some("4"));
    assert!(header(&trailers, "grpc-message").is_some_and(|m| m.contains("deadline exceeded")));
    assert_eq!(header(&trailers, "x-request-budget-ms"), Some("0"));
    assert!(
        within(dropped).await.is_err(),
        "the handler's stream was dropped"
    );
}

// === the server, in process ===

/// A gRPC handler that answers at once with the time left on its
/// deadline, in ms, in a header.
fn tells_time_left()
-> impl tower::Service<Request<()>, Response = Response<Empty<Bytes>>, Error = Infallible> + Clone {
    service_fn(|_req: Request<()>| async {
        let left = Deadline::current().unwrap().remaining().as_millis();
        let mut res = Response::new(Empty::new());
        res.headers_mut()
            .insert("left-ms", HeaderValue::from(left as u64));
        Ok::<_, Infallible>(res)
    })
}

#[tokio::test(start_paused = true)]
async fn the_smaller_of_the_budget_and_grpc_timeout_wins() {
    let server = ServerDeadlineLayer::new(Duration::from_secs(30)).layer(tells_time_left());
    for (budget, timeout, left) in [
        ("10000", "50m", "50"),
        ("50", "10S", "50"),
        ("20000", "5000000u", "5000"),
    ] {
        let mut req = grpc_request(());
        req.headers_mut()
            .insert(BUDGET_HEADER, HeaderValue::from_static(budget));
        req.headers_mut()
            .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static(timeout));
        let res = server.clone().oneshot(req).await.unwrap();
        assert_eq!(
            header(res.headers(), "left-ms"),
            Some(left),
            "{budget} / {timeout}"
        );
    }
    // The server's own timeout still bounds both.
    let mut req = grpc_request(());
    req.headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("1H"));
    let res = server.oneshot(req).await.unwrap();
    assert_eq!(header(res.headers(), "left-ms"), Some("30000"));
}

#[tokio::test(start_paused = true)]
async fn a_rest_call_ignores_grpc_timeout() {
    let server = ServerDeadlineLayer::new(Duration::from_secs(30)).layer(tells_time_left());
    let req = Request::get("/users/7")
        .header(GRPC_TIMEOUT_HEADER, "50m")
        .body(())
        .unwrap();
    let res = server.oneshot(req).await.unwrap();
    assert_eq!(header(res.headers(), "left-ms"), Some("30000"));
}

#[tokio::test(start_paused = true)]
async fn a_malformed_grpc_timeout_or_budget_is_invalid_argument_and_the_handler_not_called() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let server = ServerDeadlineLayer::new(Duration::from_secs(30)).layer(service_fn(
        move |_req: Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        },
    ));
    for (name, value) in [
        ("grpc-timeout", "1.5S"),
        ("grpc-timeout", "100000000m"),
        ("grpc-timeout", "-1S"),
        ("grpc-timeout", "5"),
        ("grpc-timeout", "5m\r\nx: y"),
        ("x-request-budget-ms", "-1"),
        ("x-request-budget-ms", "1e3"),
    ] {
        let mut req = grpc_request(());
        // Some of these are no valid header value at all; those cannot be sent.
        let Ok(value) = HeaderValue::from_str(value) else {
            continue;
        };
        req.headers_mut().insert(name, value.clone());
        let res = server.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{name}: {value:?}");
        assert_eq!(
            header(res.headers(), "content-type"),
            Some("application/grpc")
        );
        assert_eq!(
            header(res.headers(), "grpc-status"),
            Some("3"),
            "{name}: {value:?}"
        );
        let message = header(res.headers(), "grpc-message").unwrap();
        assert!(message.contains(name), "{message}");
        assert!(
            !message.contains(value.to_str().unwrap()),
            "not echoed: {message}"
        );
        let (data, trailers) = drain(res.into_body()).await;
        assert_eq!((data.as_str(), trailers), ("", None));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_grpc_budget_below_the_floor_is_deadline_exceeded_without_calling_the_handler() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let server = ServerDeadlineLayer::new(Duration::from_secs(30))
        .min_budget(Duration::from_millis(20))
        .layer(service_fn(move |_req: Request<()>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new())) }
        }));
    let mut req = grpc_request(());
    req.headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("19999u"));
    let res = server.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        header(res.headers(), "content-type"),
        Some("application/grpc")
    );
    assert_eq!(header(res.headers(), "grpc-status"), Some("4"));
    assert_eq!(header(res.headers(), "x-request-budget-ms"), Some("0"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// The same body, after the same handler, for a gRPC and a REST call.
async fn slow_body_after_a_quick_answer(grpc: bool) -> (String, Option<HeaderMap>) {
    let server = ServerDeadlineLayer::new(Duration::from_secs(1)).layer(service_fn(
        |_req: Request<()>| async {
            let last = Frame::data(Bytes::from_static(b", message 2"));
            let body = Script::new("message 1", Duration::from_secs(2), last);
            Ok::<_, Infallible>(Response::new(body))
        },
    ));
    let req = if grpc {
        grpc_request(())
    } else {
        Request::get("/users").body(()).unwrap()
    };
    let res: Response<DeadlineBody<Script>> = server.oneshot(req).await.unwrap();
    drain(res.into_body()).await
}

#[tokio::test(start_paused = true)]
async fn the_deadline_cuts_a_grpc_stream_but_not_a_rest_body() {
    let (data, trailers) = slow_body_after_a_quick_answer(true).await;
    assert_eq!(data, "message 1");
    let trailers = trailers.unwrap();
    assert_eq!(header(&trailers, "grpc-status"), Some("4"));
    // The server's own timeout, not the caller's budget: no mark.
    assert_eq!(header(&trailers, "x-request-budget-ms"), None);

    let (data, trailers) = slow_body_after_a_quick_answer(false).await;
    assert_eq!(data, "message 1, message 2", "REST bodies are not bounded");
    assert_eq!(trailers, None);
}

#[tokio::test(start_paused = true)]
async fn trailers_the_handler_sends_in_time_pass_through() {
    let server = ServerDeadlineLayer::new(Duration::from_secs(1)).layer(service_fn(
        |_req: Request<()>| async {
            let body = Script::new("message 1", Duration::from_millis(999), grpc_status("5"));
            Ok::<_, Infallible>(Response::new(body))
        },
    ));
    let res = server.oneshot(grpc_request(())).await.unwrap();
    let (data, trailers) = drain(res.into_body()).await;
    assert_eq!(data, "message 1");
    assert_eq!(header(&trailers.unwrap(), "grpc-status"), Some("5"));
}

// === the client ===

/// A client whose server answers with the deadline headers it was sent.
fn echo_deadline_headers()
-> impl tower::Service<Request<()>, Response = Response<HeaderMap>, Error = BoxError> + Clone {
    service_fn(|req: Request<()>| async move {
        let mut seen = HeaderMap::new();
        for name in [GRPC_TIMEOUT_HEADER, BUDGET_HEADER] {
            if let Some(value) = req.headers().get(&name) {
                seen.insert(name, value.clone());
            }
        }
        Ok::<_, BoxError>(Response::new(seen))
    })
}

#[tokio::test(start_paused = true)]
async fn propagation_writes_grpc_timeout_for_grpc_calls_only() {
    let client = PropagateDeadlineLayer::new().layer(echo_deadline_headers());
    let deadline = Deadline::after(Duration::from_micros(1_500_900));

    let mut req = grpc_request(());
    req.extensions_mut().insert(deadline);
    let sent = client.clone().oneshot(req).await.unwrap().into_body();
    assert_eq!(header(&sent, "grpc-timeout"), Some("1500900u"));
    assert_eq!(header(&sent, "x-request-budget-ms"), Some("1500"));

    let mut req = Request::get("/users/7").body(()).unwrap();
    req.extensions_mut().insert(deadline);
    let sent = client.clone().oneshot(req).await.unwrap().into_body();
    assert_eq!(header(&sent, "grpc-timeout"), None, "REST: no grpc-timeout");
    assert_eq!(header(&sent, "x-request-budget-ms"), Some("1500"));

    // No deadline: nothing is written, and the caller's header stays.
    let mut req = grpc_request(());
    req.headers_mut()
        .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static("7S"));
    let sent = client.oneshot(req).await.unwrap().into_body();
    assert_eq!(header(&sent, "grpc-timeout"), Some("7S"));
    assert_eq!(header(&sent, "x-request-budget-ms"), None);
}

#[tokio::test(start_paused = true)]
async fn propagation_keeps_a_smaller_grpc_timeout_of_the_callers() {
    let client = PropagateDeadlineLayer::new().layer(echo_deadline_headers());
    for (callers, sent) in [
        ("100m", "100m"),     // smaller: kept
        ("3S", "2000000u"),   // larger: ours
        ("1.5S", "2000000u"), // malformed: replaced
    ] {
        let mut req = grpc_request(());
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(2)));
        req.headers_mut()
            .insert(GRPC_TIMEOUT_HEADER, HeaderValue::from_static(callers));
        let headers = client.clone().oneshot(req).await.unwrap().into_body();
        assert_eq!(header(&headers, "grpc-timeout"), Some(sent), "{callers}");
    }
}

/// A client whose server answers a trailers-only gRPC status, marked as
/// the caller's budget running out or not.
fn answers_grpc(
    status: &'static str,
    marked: bool,
) -> impl tower::Service<Request<()>, Response = Response<()>, Error = BoxError> + Clone {
    service_fn(move |_req: Request<()>| async move {
        let mut res = Response::new(());
        res.headers_mut()
            .insert("grpc-status", HeaderValue::from_static(status));
        if marked {
            res.headers_mut()
                .insert(BUDGET_HEADER, HeaderValue::from_static("0"));
        }
        Ok::<_, BoxError>(res)
    })
}

#[tokio::test(start_paused = true)]
async fn a_marked_grpc_deadline_exceeded_is_a_deadline_error() {
    let with_deadline = |req: Request<()>| {
        let mut req = req;
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_secs(1)));
        req
    };
    let client = PropagateDeadlineLayer::new().layer(answers_grpc("4", true));
    let err = client
        .oneshot(with_deadline(grpc_request(())))
        .await
        .unwrap_err();
    let elapsed = err.downcast_ref::<Elapsed>().unwrap();
    assert!(elapsed.is_deadline());
    assert_eq!(elapsed.limit(), Duration::from_secs(1));

    // Unmarked: the server's own deadline, its answer to return as is.
    let client = PropagateDeadlineLayer::new().layer(answers_grpc("4", false));
    assert!(
        client
            .oneshot(with_deadline(grpc_request(())))
            .await
            .is_ok()
    );
    // Another status, marked or not, is no deadline.
    let client = PropagateDeadlineLayer::new().layer(answers_grpc("14", true));
    assert!(
        client
            .oneshot(with_deadline(grpc_request(())))
            .await
            .is_ok()
    );
    // A REST call's 200 is not read as gRPC.
    let client = PropagateDeadlineLayer::new().layer(answers_grpc("4", true));
    let rest = Request::get("/users/7").body(()).unwrap();
    assert!(client.oneshot(with_deadline(rest)).await.is_ok());
}

/// Both ends over a real connection: the budget this client sends runs
/// out at the server, which says so, and the client reports its deadline.
#[tokio::test]
async fn the_servers_deadline_exceeded_for_our_budget_comes_back_as_a_deadline_error() {
    let handler = service_fn(|_req: Request<hyper::body::Incoming>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
    });
    let addr = h2::serve(ServerDeadlineLayer::new(Duration::from_secs(30)).layer(handler)).await;
    let send = h2::connect::<Full<Bytes>>(addr).await;
    let client = PropagateDeadlineLayer::new().layer(service_fn(move |req| {
        let mut send = send.clone();
        async move { send.send_request(req).await }
    }));
    // A deadline on the request only: no client-side timer races the server.
    let mut req = grpc_request(Full::new(Bytes::new()));
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(100)));

    let err = within(client.oneshot(req)).await.unwrap_err();

    assert!(
        err.downcast_ref::<Elapsed>().unwrap().is_deadline(),
        "{err}"
    );
}
