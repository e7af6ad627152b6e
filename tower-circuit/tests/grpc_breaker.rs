//! The gRPC breaker against a real HTTP/2 server on 127.0.0.1:0: where the
//! status comes from (head, trailers, none) decides what the breaker
//! records, and when.
//!
//! Each test runs on a paused clock: nothing here waits on time, and the
//! open duration passes only when a test advances it.

#[path = "support/grpc.rs"]
mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tower::{Layer, Service, ServiceExt};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, CircuitState, Config, Window};
use tower_circuit::grpc::breaker::ResponseBody;
use tower_circuit::grpc::{GrpcCircuitBreaker, ServerCodesAsFailures};

use support::{H2Client, Server, client, grpc_request, serve};

type Guarded = GrpcCircuitBreaker<H2Client>;
type Answer = Response<ResponseBody<Incoming, ServerCodesAsFailures>>;

/// Opens after four calls of which half failed; one probe when half-open.
fn breaker() -> Breaker {
    let config = Config::default()
        .window(Window::Count { size: 4 })
        .minimum_calls(4)
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_secs(30))
        .half_open_max_calls(1);
    Breaker::new("user-service", config).unwrap()
}

async fn setup() -> (Server, Breaker, Guarded) {
    let server = serve().await;
    let breaker = breaker();
    let svc = breaker.grpc_layer().layer(client::<Empty<Bytes>>());
    (server, breaker, svc)
}

/// Sends one call; the answer's body is still unread.
async fn send(svc: &mut Guarded, server: &Server, method: &str) -> Result<Answer, BoxError> {
    svc.ready()
        .await?
        .call(grpc_request(&server.uri(method)))
        .await
}

/// Sends one call and reads its body to the end; returns the trailers'
/// `grpc-status`, or the body's error.
async fn call(
    svc: &mut Guarded,
    server: &Server,
    method: &str,
) -> Result<Option<String>, BoxError> {
    let res = send(svc, server, method).await?;
    let collected = res.into_body().collect().await?;
    Ok(collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_owned()))
}

#[tokio::test(start_paused = true)]
async fn opens_on_unavailable_in_the_trailers() {
    let (server, breaker, mut svc) = setup().await;
    for _ in 0..4 {
        // The trailers reach the caller untouched.
        let status = call(&mut svc, &server, "Unavailable").await.unwrap();
        assert_eq!(status.as_deref(), Some("14"));
    }
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (4, 4));
    assert_eq!(breaker.state(), CircuitState::Open);

    let err = send(&mut svc, &server, "Ok").await.unwrap_err();
    assert!(err.is::<CircuitOpen>(), "{err}");
    assert_eq!(server.hits(), 4, "an open circuit does not call the server");
}

#[tokio::test(start_paused = true)]
async fn does_not_open_on_not_found_in_the_trailers() {
    let (server, breaker, mut svc) = setup().await;
    for _ in 0..4 {
        let status = call(&mut svc, &server, "NotFound").await.unwrap();
        assert_eq!(status.as_deref(), Some("5"));
    }
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (4, 0));
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_trailers_counts_only_at_the_end_of_the_stream() {
    let (server, breaker, mut svc) = setup().await;
    let res = send(&mut svc, &server, "Unavailable").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(breaker.stats().calls, 0, "a 200 head decides nothing");

    res.into_body().collect().await.unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_trailers_only_answer_counts_from_the_head() {
    let (server, breaker, mut svc) = setup().await;
    let res = send(&mut svc, &server, "TrailersOnlyUnavailable")
        .await
        .unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (1, 1));
    // Dropping a body whose outcome is known changes nothing.
    drop(res);
    assert_eq!(breaker.stats().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn an_error_mid_stream_is_a_failure() {
    let (server, breaker, mut svc) = setup().await;
    let mut body = send(&mut svc, &server, "MidStreamError")
        .await
        .unwrap()
        .into_body();
    assert!(body.frame().await.unwrap().unwrap().is_data());
    assert_eq!(breaker.stats().calls, 0);

    server.release();
    // The stream's reset reaches the caller as the body's error.
    body.frame().await.unwrap().unwrap_err();
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_ends_without_a_status_is_a_failure() {
    let (server, breaker, mut svc) = setup().await;
    assert_eq!(call(&mut svc, &server, "NoStatus").await.unwrap(), None);
    let status = call(&mut svc, &server, "TrailersWithoutStatus")
        .await
        .unwrap();
    assert_eq!(status, None);
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn http_answers_without_a_status_follow_grpc_mapping() {
    let (server, breaker, mut svc) = setup().await;
    // 503 → UNAVAILABLE, a bare 404 → UNIMPLEMENTED: failures.
    for method in ["Proxy503", "Bare404"] {
        let res = send(&mut svc, &server, method).await.unwrap();
        assert_ne!(res.status(), 200);
    }
    assert_eq!(breaker.stats().failures, 2);
    // 401 → UNAUTHENTICATED: the caller's problem, a success.
    send(&mut svc, &server, "Bare401").await.unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_body_dropped_unread_records_nothing() {
    let (server, breaker, mut svc) = setup().await;
    let res = send(&mut svc, &server, "Hang").await.unwrap();
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(breaker.stats().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_probe_whose_body_is_dropped_gives_its_slot_back() {
    let (server, breaker, mut svc) = setup().await;
    for _ in 0..4 {
        send(&mut svc, &server, "TrailersOnlyUnavailable")
            .await
            .unwrap();
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    tokio::time::advance(Duration::from_secs(31)).await;

    // The one probe: its answer's head arrives, then the caller drops it.
    let probe = send(&mut svc, &server, "Hang").await.unwrap();
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    drop(probe);

    // The slot is free again: the next probe reaches the server and
    // closes the circuit.
    assert_eq!(
        call(&mut svc, &server, "Ok").await.unwrap().as_deref(),
        Some("0")
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(server.hits(), 6);
}

#[tokio::test(start_paused = true)]
async fn deadline_exceeded_for_a_spent_caller_budget_is_ignored() {
    let (server, breaker, mut svc) = setup().await;
    for method in ["BudgetSpent", "BudgetSpentInTrailers"] {
        let mut req = grpc_request(&server.uri(method));
        req.headers_mut()
            .insert("grpc-timeout", "100m".parse().unwrap());
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(breaker.stats().calls, 0, "neither call is counted");

    // Without a deadline sent, the mark cannot be about this caller.
    call(&mut svc, &server, "BudgetSpent").await.unwrap();
    let stats = breaker.stats();
    assert_eq!((stats.calls, stats.failures), (1, 1));
}
