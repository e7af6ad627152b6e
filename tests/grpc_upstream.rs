//! The order service calling the user service over gRPC
//! (`--user-transport grpc`), through the gRPC form of its client stack:
//! the breaker opens on UNAVAILABLE and not on NOT_FOUND, GetUser is
//! retried through UNAVAILABLE, and a caller's deadline crosses two hops
//! (REST into the order service, `grpc-timeout` out of it).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use demo_services::auth::ORDER_SERVICE;
use demo_services::order::{Settings, UserTransport};
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use integration_tests::{Cluster, Http, fast_resilience, order_body, start_order};
use tower_circuit::breaker::CircuitState;

fn grpc_cluster() -> impl Future<Output = Cluster> {
    Cluster::start_over(UserTransport::Grpc, fast_resilience())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_opens_the_breaker_and_not_found_does_not() {
    let c = grpc_cluster().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    let breaker = c.orders.upstream.users.breaker().clone();

    // Users the user service does not know: NOT_FOUND, the order is 404,
    // and the breaker counts them as the dependency doing its job.
    for _ in 0..6 {
        let res = http.post(&orders, &token, &order_body(4040)).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{:?}", res.json);
        assert_eq!(res.error(), "user_not_found");
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.stats().failure_rate, 0.0);

    // The user service failing every call (fault injection, answered over
    // gRPC as UNAVAILABLE): each lookup is retried once, then counted, until
    // the failures outweigh the six successes and the breaker opens.
    c.users.server.faults.set_error_rate(1.0);
    let mut failed_orders = 0;
    while breaker.state() == CircuitState::Closed {
        let failed = http.post(&orders, &token, &order_body(3)).await;
        assert_eq!(
            failed.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            failed.json
        );
        failed_orders += 1;
        assert!(
            failed_orders <= 6,
            "the breaker never opened: {:?}",
            breaker.stats()
        );
    }
    assert!(
        c.orders.upstream.users.retry_stats().retries >= 1,
        "GetUser is idempotent: UNAVAILABLE is retried"
    );
    assert_eq!(breaker.state(), CircuitState::Open);
    let fast = http.post(&orders, &token, &order_body(3)).await;
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        fast.headers.contains_key("retry-after"),
        "{:?}",
        fast.headers
    );
    assert!(breaker.stats().rejected >= 1);
}

/// What a stand-in user service saw of each call: its headers.
type Seen = Arc<Mutex<Vec<http::HeaderMap>>>;

/// A gRPC "user service" on 127.0.0.1:0 that records each call's headers
/// and answers UNAVAILABLE after `delay`.
async fn recording_user_service(delay: Duration) -> (std::net::SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let record = record.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    record.lock().unwrap().push(req.headers().clone());
                    async move {
                        tokio::time::sleep(delay).await;
                        let mut res = http::Response::new(Full::new(Bytes::new()));
                        let headers = res.headers_mut();
                        headers
                            .insert("content-type", HeaderValue::from_static("application/grpc"));
                        headers.insert("grpc-status", HeaderValue::from_static("14"));
                        Ok::<_, std::convert::Infallible>(res)
                    }
                });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(socket), service)
                        .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_budget_crosses_rest_then_grpc() {
    let c = grpc_cluster().await;
    let (addr, seen) = recording_user_service(Duration::ZERO).await;
    // A second order service, calling the stand-in over gRPC.
    let settings = Settings {
        user_url: format!("http://{addr}"),
        ..c.settings.clone()
    };
    let dir = integration_tests::Data::new().await;
    let (order, _) = start_order(&dir, &c.keys, &settings, None).await;
    let token = c.gateway(ORDER_SERVICE);

    // Hop one: the caller gives the order service 800 ms, over REST.
    let res = Http::default()
        .send(
            http::Method::POST,
            &format!("{}/orders", order.url()),
            Some(&token),
            &[
                ("x-request-budget-ms", "800"),
                ("content-type", "application/json"),
            ],
            order_body(9).to_string(),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        res.json
    );

    // Hop two: every GetUser attempt carried what was left of it, in
    // gRPC's own header and ours, and never more than the caller gave.
    let seen = seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the stand-in was called");
    for headers in &seen {
        assert_eq!(headers["content-type"], "application/grpc");
        let budget: u64 = headers["x-request-budget-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(budget > 0 && budget <= 800, "x-request-budget-ms {budget}");
        let timeout =
            tower_circuit::timeout::parse_grpc_timeout(headers["grpc-timeout"].to_str().unwrap())
                .expect("a well-formed grpc-timeout");
        assert!(
            timeout > Duration::ZERO && timeout <= Duration::from_millis(800),
            "grpc-timeout {timeout:?}"
        );
        assert!(
            headers["authorization"]
                .to_str()
                .unwrap()
                .starts_with("Bearer "),
            "the service token rides in the metadata"
        );
    }
    order.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_at_the_grpc_user_service_is_not_a_failure() {
    let c = grpc_cluster().await;
    // The user service answers every call after 2 s; the caller gives the
    // order 300 ms. The user service's own deadline (from grpc-timeout)
    // answers DEADLINE_EXCEEDED, marked as the caller's budget: the order
    // says 504 with the mark, and the breaker does not count it.
    c.users.server.faults.set_latency(Duration::from_secs(2));
    let token = c.gateway(ORDER_SERVICE);
    let started = tokio::time::Instant::now();
    let res = Http::default()
        .send(
            http::Method::POST,
            &format!("{}/orders", c.order.url()),
            Some(&token),
            &[
                ("x-request-budget-ms", "300"),
                ("content-type", "application/json"),
            ],
            order_body(2).to_string(),
        )
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "answered within the budget, not after the user service's 2 s: {:?}",
        started.elapsed()
    );
    assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", res.json);
    assert_eq!(res.headers["x-request-budget-ms"], "0");
    let stats = c.orders.upstream.users.breaker().stats();
    assert_eq!(stats.failure_rate, 0.0, "{stats:?}");
    assert_eq!(c.orders.upstream.users.retry_stats().retries, 0);
}
