use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{BoxError, Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::timeout::{
    BUDGET_HEADER, Deadline, DeadlineLayer, Elapsed, PropagateDeadlineLayer, RequestTimeoutLayer,
    ServerDeadlineLayer,
};

use crate::request;

/// A client that answers with the budget header it was sent.
fn echo_budget()
-> impl Service<Request<()>, Response = http::Response<Option<String>>, Error = BoxError> + Clone {
    service_fn(|req: Request<()>| async move {
        let sent = req
            .headers()
            .get(BUDGET_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        Ok::<_, BoxError>(http::Response::new(sent))
    })
}

#[tokio::test(start_paused = true)]
async fn sends_the_time_left_in_whole_milliseconds_rounded_down() {
    let svc = PropagateDeadlineLayer::new().layer(echo_budget());
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_micros(1_500_900)));
    assert_eq!(
        svc.oneshot(req).await.unwrap().into_body().as_deref(),
        Some("1500")
    );
}

#[tokio::test(start_paused = true)]
async fn sends_no_header_without_a_deadline() {
    let svc = PropagateDeadlineLayer::new().layer(echo_budget());
    assert_eq!(
        svc.oneshot(request(Method::GET)).await.unwrap().into_body(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn does_not_send_once_less_than_a_millisecond_is_left() {
    let svc = PropagateDeadlineLayer::new().layer(echo_budget());
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_micros(999)));
    let err = svc.oneshot(req).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().unwrap().is_deadline());
}

#[tokio::test(start_paused = true)]
async fn does_not_send_below_its_min_budget() {
    let svc = PropagateDeadlineLayer::new()
        .min_budget(Duration::from_millis(10))
        .layer(echo_budget());
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_micros(9_999)));
    let err = svc.clone().oneshot(req).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().unwrap().is_deadline());
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_millis(10)));
    assert_eq!(
        svc.oneshot(req).await.unwrap().into_body().as_deref(),
        Some("10")
    );
}

/// A client whose server answers `504`, with `x-request-budget-ms: 0`
/// when `marked`.
fn gateway_timeout(
    marked: bool,
) -> impl Service<Request<()>, Response = http::Response<()>, Error = BoxError> + Clone {
    service_fn(move |_: Request<()>| async move {
        let mut res = http::Response::new(());
        *res.status_mut() = StatusCode::GATEWAY_TIMEOUT;
        if marked {
            res.headers_mut()
                .insert(BUDGET_HEADER, http::HeaderValue::from_static("0"));
        }
        Ok::<_, BoxError>(res)
    })
}

#[tokio::test(start_paused = true)]
async fn a_504_saying_the_budget_sent_ran_out_is_a_deadline_error() {
    let with_deadline = || {
        let mut req = request(Method::GET);
        req.extensions_mut()
            .insert(Deadline::after(Duration::from_millis(250)));
        req
    };
    let svc = PropagateDeadlineLayer::new().layer(gateway_timeout(true));
    let err = svc.clone().oneshot(with_deadline()).await.unwrap_err();
    let elapsed = err.downcast_ref::<Elapsed>().unwrap();
    assert!(elapsed.is_deadline());
    assert_eq!(
        elapsed.limit(),
        Duration::from_millis(250),
        "the budget sent"
    );
    // No budget sent: the server's 504 cannot be about ours.
    let res = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // An unmarked 504 is the server's own failure.
    let svc = PropagateDeadlineLayer::new().layer(gateway_timeout(false));
    let res = svc.oneshot(with_deadline()).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
}

/// A healthy dependency that is slower than the caller's budget, reached
/// through the whole client stack: its server's deadline (which starts
/// from the budget rounded down, so it fires first) answers 504, and the
/// breaker must neither count that nor retry it.
#[tokio::test(start_paused = true)]
async fn a_downstream_504_for_the_callers_budget_neither_opens_the_breaker_nor_retries() {
    use tower_circuit::breaker::{Breaker, CircuitState, Config, Window};
    use tower_circuit::retry::RetryLayer;

    let app = server(Duration::from_secs(10), Duration::from_millis(100));
    let wire = service_fn(move |req: Request<()>| {
        let app = app.clone();
        async move {
            let (parts, ()) = req.into_parts();
            let res = app
                .oneshot(Request::from_parts(parts, Body::empty()))
                .await?;
            Ok::<_, BoxError>(res.map(|_| ()))
        }
    });
    let breaker = Breaker::new(
        "slow",
        Config::default()
            .window(Window::Count { size: 4 })
            .minimum_calls(4),
    )
    .unwrap();
    let retry = RetryLayer::builder("slow").build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_micros(50_900)))
        .layer(retry.clone())
        .layer(breaker.layer())
        .layer(RequestTimeoutLayer::by_method())
        .layer(PropagateDeadlineLayer::new())
        .service(wire);
    for _ in 0..10 {
        let start = Instant::now();
        let err = svc.clone().oneshot(request(Method::GET)).await.unwrap_err();
        let elapsed = err.downcast_ref::<Elapsed>().expect("a deadline error");
        assert!(elapsed.is_deadline(), "{err}");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(50),
            "the server's deadline answered first"
        );
    }
    let m = breaker.stats();
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!((m.calls, m.failures), (0, 0));
    assert_eq!(retry.stats().retries, 0);
}

#[tokio::test(start_paused = true)]
async fn only_the_callers_budget_running_out_is_marked() {
    let app = server(Duration::from_millis(300), Duration::from_secs(1));
    let marked = |res: &http::Response<Body>| res.headers().get(BUDGET_HEADER).cloned();
    let res = app.clone().oneshot(get_with(Some("250"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(marked(&res).unwrap(), "0", "the caller's budget ran out");
    let res = app.clone().oneshot(get_with(Some("500"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(marked(&res), None, "the server's own timeout ran out");
    let res = app.oneshot(get_with(None)).await.unwrap();
    assert_eq!(marked(&res), None);
    let floor = Router::new().route("/", get(|| async { "ok" })).layer(
        ServerDeadlineLayer::new(Duration::from_secs(1)).min_budget(Duration::from_millis(5)),
    );
    let res = floor.oneshot(get_with(Some("4"))).await.unwrap();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(marked(&res).unwrap(), "0", "below the floor");
}

fn get_with(budget: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/");
    if let Some(budget) = budget {
        req = req.header(BUDGET_HEADER, budget);
    }
    req.body(Body::empty()).unwrap()
}

/// A server whose handler answers with the time left on its deadline (ms)
/// after sleeping `delay`.
fn server(own: Duration, delay: Duration) -> Router {
    Router::new()
        .route(
            "/",
            get(move || async move {
                let left = Deadline::current().unwrap().remaining().as_millis();
                tokio::time::sleep(delay).await;
                left.to_string()
            }),
        )
        .layer(ServerDeadlineLayer::new(own))
}

async fn send(app: Router, budget: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get("/");
    if let Some(budget) = budget {
        req = req.header(BUDGET_HEADER, budget);
    }
    let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn server_uses_its_own_timeout_without_a_header() {
    let (status, left) = send(server(Duration::from_secs(10), Duration::ZERO), None).await;
    assert_eq!((status, left.as_str()), (StatusCode::OK, "10000"));
}

#[tokio::test(start_paused = true)]
async fn server_uses_the_smaller_of_its_timeout_and_the_callers_budget() {
    let app = server(Duration::from_secs(10), Duration::ZERO);
    assert_eq!(send(app.clone(), Some("500")).await.1, "500");
    assert_eq!(send(app, Some("60000")).await.1, "10000");
}

#[tokio::test(start_paused = true)]
async fn server_answers_504_with_json_when_the_budget_runs_out() {
    let app = server(Duration::from_secs(10), Duration::from_secs(1));
    let start = Instant::now();
    let (status, body) = send(app, Some("250")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(start.elapsed(), Duration::from_millis(250));
    assert_eq!(
        body,
        r#"{"error":"deadline_exceeded","message":"deadline exceeded: the call's budget of 250 ms ran out"}"#
    );
}

#[tokio::test(start_paused = true)]
async fn server_rejects_a_malformed_budget_with_400_json() {
    let (status, body) = send(
        server(Duration::from_secs(10), Duration::ZERO),
        Some("soon"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.starts_with(r#"{"error":"invalid_budget_header","message":"x-request-budget-ms must be a whole number"#), "{body}");
}

async fn send_raw(app: Router, budget: &[u8]) -> (StatusCode, serde_json::Value) {
    let req = Request::get("/")
        .header(
            BUDGET_HEADER,
            http::HeaderValue::from_bytes(budget).unwrap(),
        )
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&body)));
    (status, json)
}

#[tokio::test(start_paused = true)]
async fn hostile_budget_headers_get_400_with_valid_json() {
    let app = server(Duration::from_secs(10), Duration::ZERO);
    let hostile: [&[u8]; 14] = [
        b"1\t2",
        b"+5",
        b"-5",
        b" 5",
        b"5 ",
        b"1.5",
        b"0x10",
        b"\"",
        b"\\",
        b"\"}{\"error\":\"x",
        b"\\u0000\\\"",
        b"\x80\xff\xfe",
        b"5\x80",
        b"",
    ];
    for value in hostile {
        let (status, json) = send_raw(app.clone(), value).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?}");
        assert_eq!(json["error"], "invalid_budget_header", "{value:?}");
        assert!(json["message"].as_str().unwrap().contains("digits only"));
    }
    // 1*DIGIT, however long, is a budget: one beyond u64 saturates and the
    // server's own timeout bounds it.
    let (status, left) = send(app.clone(), Some("99999999999999999999999")).await;
    assert_eq!((status, left.as_str()), (StatusCode::OK, "10000"));
    assert_eq!(send(app, Some("007")).await.1, "7");
}

#[tokio::test(start_paused = true)]
async fn a_budget_below_the_floor_is_answered_504_without_calling_the_handler() {
    let called = Arc::new(Mutex::new(0));
    let seen = called.clone();
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                *seen.lock().unwrap() += 1;
                "ok"
            }),
        )
        .layer(
            ServerDeadlineLayer::new(Duration::from_secs(10)).min_budget(Duration::from_millis(10)),
        );
    let start = Instant::now();
    let (status, json) = send_raw(app.clone(), b"9").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json["error"], "deadline_exceeded");
    assert_eq!(start.elapsed(), Duration::ZERO, "answered at once");
    assert_eq!(*called.lock().unwrap(), 0, "the handler was not called");
    assert_eq!(send(app.clone(), Some("10")).await.0, StatusCode::OK);
    assert_eq!(
        send(app, None).await.0,
        StatusCode::OK,
        "no header: the server's own timeout"
    );
    assert_eq!(*called.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_server_timeout_of_duration_max_does_not_overflow() {
    let (status, left) = send(server(Duration::MAX, Duration::ZERO), Some("250")).await;
    assert_eq!((status, left.as_str()), (StatusCode::OK, "250"));
    let (status, _) = send(server(Duration::MAX, Duration::ZERO), None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Starts `app` on a loopback port; returns its base URL.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The client stack: a budget for the whole call, a per-attempt timeout,
/// and the budget sent downstream.
fn client_stack(
    client: HttpClient,
    budget: Duration,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = http::Response<hyper::body::Incoming>,
    Error = BoxError,
    Future: Send,
> + Clone {
    ServiceBuilder::new()
        .layer(DeadlineLayer::new(budget))
        .layer(RequestTimeoutLayer::by_method())
        .layer(PropagateDeadlineLayer::new())
        .service(client)
}

/// Real sockets on real time: the budget goes over the wire, and a call the
/// handler makes downstream is cut off at its caller's deadline.
#[tokio::test]
async fn deadline_crosses_two_hops_over_real_http() {
    // The last hop never answers within any timeout of its own, and
    // records the budget it was given.
    let seen_downstream = Arc::new(Mutex::new(None::<String>));
    let seen = seen_downstream.clone();
    let slow = Router::new().route(
        "/",
        get(move |headers: http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let budget = headers
                    .get(BUDGET_HEADER)
                    .map(|v| v.to_str().unwrap().to_owned());
                *seen.lock().unwrap() = budget;
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }
        }),
    );
    let slow_url = serve(slow).await;

    // The middle hop calls the last one through the client stack with a
    // generous 10 s budget of its own; the caller's smaller budget wins.
    let middle = Router::new()
        .route(
            "/",
            get(move |headers: http::HeaderMap| {
                let slow_url = slow_url.clone();
                async move {
                    let received = headers[BUDGET_HEADER].to_str().unwrap().to_owned();
                    let client = client_stack(http_client(), Duration::from_secs(10));
                    let req = Request::get(format!("{slow_url}/"))
                        .body(Full::default())
                        .unwrap();
                    let outcome = match client.oneshot(req).await {
                        Ok(res) => format!("downstream answered {}", res.status()),
                        Err(e) => e.to_string(),
                    };
                    format!("received {received}; {outcome}")
                }
            }),
        )
        .layer(ServerDeadlineLayer::new(Duration::from_secs(10)));
    let middle_url = serve(middle).await;

    let start = Instant::now(); // real time: this test does not pause the clock
    // A budget roomy enough for two loopback hops on a busy CI machine, and
    // well under the 3 s per-attempt GET timeout it must beat.
    let client = client_stack(http_client(), Duration::from_millis(1000));
    let req = Request::get(format!("{middle_url}/"))
        .body(Full::default())
        .unwrap();
    let res = client.oneshot(req).await;
    let took = start.elapsed();

    // All three fire at the same instant, so any may win: the caller gives
    // up at its own 1000 ms, the middle hop's server answers 504, or the
    // middle hop's downstream call hits the deadline and its handler says
    // so. Either way well before the 3 s GET timeout.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    match res {
        Ok(res) if res.status() == StatusCode::OK => {
            let body = res.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(body.contains("deadline exceeded"), "{body}");
        }
        Ok(res) => assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT),
        Err(e) => assert!(
            e.downcast_ref::<Elapsed>()
                .is_some_and(Elapsed::is_deadline),
            "{e}"
        ),
    }
    let downstream: u64 = seen_downstream
        .lock()
        .unwrap()
        .clone()
        .expect("the last hop was called with a budget")
        .parse()
        .unwrap();
    assert!(
        downstream < 1000,
        "the last hop got {downstream} ms, less than the caller's 1000"
    );
}

/// The budget the server sees is less than what the client set: time spent
/// before sending is not handed on.
#[tokio::test]
async fn server_sees_less_budget_than_the_client_set() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                Deadline::current()
                    .unwrap()
                    .remaining()
                    .as_millis()
                    .to_string()
            }),
        )
        .layer(ServerDeadlineLayer::new(Duration::from_secs(10)));
    let url = serve(app).await;
    let client = client_stack(http_client(), Duration::from_secs(2));
    let req = Request::get(format!("{url}/"))
        .body(Full::default())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let left: u64 = std::str::from_utf8(&body).unwrap().parse().unwrap();
    assert!(left < 2000 && left > 0, "server saw {left} ms");
}
