//! Failure drills with injected faults: a slow user service, half of its
//! requests failing, and the service stopped under a stream of orders;
//! what `/health`, `/metrics` and the logs show meanwhile.

use std::time::Duration;

use demo_services::auth::{ORDER_SERVICE, USER_SERVICE};
use http::{Method, StatusCode};
use integration_tests::{Cluster, Http, fast_resilience, logs, order_body, start_user};
use tower_circuit::breaker::CircuitState;

/// A request id no other test uses.
fn request_id(test: &str) -> String {
    format!(
        "{test}-{}",
        demo_services::telemetry::request_id::new_id()
            .to_str()
            .unwrap()
    )
}

/// The value of the sample `family{labels}` in Prometheus text, where
/// `labels` is a substring of the sample's label set.
fn sample(text: &str, family: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .find(|l| labels.iter().all(|needle| l.contains(needle)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn scrape(http: &Http, base: &str) -> String {
    let res = http
        .send(Method::GET, &format!("{base}/metrics"), None, &[], "")
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "Prometheus text format"
    );
    String::from_utf8(res.raw.to_vec()).unwrap()
}

async fn health(http: &Http, base: &str) -> serde_json::Value {
    let res = http
        .send(Method::GET, &format!("{base}/health"), None, &[], "")
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "health is 200 even when a dependency is down"
    );
    res.json
}

async fn a_slow_user_service_times_out_each_attempt_retries_and_falls_back() {
    logs::capture();
    let mut resilience = fast_resilience();
    resilience.timeout_get = Duration::from_millis(100);
    resilience.retry_max = 2;
    resilience.breaker_minimum_calls = 100; // keep it closed: this is about timeouts
    let c = Cluster::start_with(resilience).await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    assert_eq!(
        http.post(&orders, &token, &order_body(1)).await.json["user"]["source"],
        "live"
    );

    c.users
        .server
        .faults
        .set_latency(Duration::from_millis(400));
    let id = request_id("slow");
    let res = http
        .post_with(
            &orders,
            &token,
            &[("x-request-id", id.as_str())],
            &order_body(1),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["user"]["source"], "cache");
    assert_eq!(res.headers["x-request-id"], id.as_str());
    assert_eq!(c.orders.upstream.users.retry_stats().retries, 2);

    // Each retry is logged, with the dependency's name and this request's id.
    let retries: Vec<String> = logs::lines_with(&id)
        .into_iter()
        .filter(|l| l.contains("retrying") && l.contains("user-service") && l.contains("timed out"))
        .collect();
    assert_eq!(retries.len(), 2, "{retries:#?}");

    // A user never seen has no copy: 503, not a hang.
    let unseen = http.post(&orders, &token, &order_body(2)).await;
    assert_eq!(unseen.status, StatusCode::SERVICE_UNAVAILABLE);

    let text = scrape(&http, &c.order.url()).await;
    assert_eq!(
        sample(
            &text,
            "retry_attempts_total",
            &["target=\"user-service\"", "reason=\"timeout\""]
        ),
        Some(4.0)
    );
}

async fn half_the_user_requests_failing_is_absorbed_by_retries_under_a_60_percent_threshold() {
    let mut resilience = fast_resilience();
    resilience.retry_max = 3;
    resilience.breaker_minimum_calls = 4;
    resilience.breaker_failure_rate = 0.6;
    let c = Cluster::start_with(resilience).await;
    c.users.server.faults.set_error_rate(0.5);
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);

    for i in 0..10 {
        let res = http
            .post(
                &format!("{}/orders", c.order.url()),
                &token,
                &order_body(1 + i % 3),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "order {i}: {:?}", res.json);
        assert_eq!(res.json["user"]["source"], "live", "order {i}");
    }
    // Requests alternate ok, fail, ok, ...: the first order goes through,
    // each later one fails once and its retry succeeds. The window's rate
    // peaks at 50 % right after a failure: under 60 %, so it stays closed.
    let users = &c.orders.upstream.users;
    let m = users.breaker().stats();
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!((m.calls, m.failures), (19, 9), "{m:?}");
    assert_eq!(users.retry_stats().retries, 9);
    assert_eq!(
        users.retry_stats().budget_exhausted,
        0,
        "within the retry budget"
    );
}

async fn half_the_user_requests_failing_reaches_the_default_threshold_and_opens() {
    // The default threshold is "at or above 50 %": evenly spread 50 %
    // failures reach it as soon as the window holds the minimum of calls.
    let mut resilience = fast_resilience();
    resilience.retry_max = 0;
    resilience.breaker_minimum_calls = 4;
    resilience.breaker_open_duration = Duration::from_secs(30);
    let c = Cluster::start_with(resilience).await;
    c.users.server.faults.set_error_rate(0.5);
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());

    // Calls ok, fail, ok, fail: 2 of 4 failed, and the breaker opens; the
    // fifth order does not reach the user service. Every order is created,
    // from the copy of the user when the lookup fails.
    let mut sources = Vec::new();
    for _ in 0..5 {
        let res = http.post(&orders, &token, &order_body(1)).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        sources.push(res.json["user"]["source"].as_str().unwrap().to_owned());
    }
    assert_eq!(sources, ["live", "cache", "live", "cache", "cache"]);
    let breaker = c.orders.upstream.users.breaker();
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(breaker.stats().rejected, 1);
}

async fn a_stopped_user_service_opens_the_breaker_visibly_and_it_closes_after_return() {
    let mut c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    assert_eq!(
        http.post(&orders, &token, &order_body(1)).await.json["user"]["source"],
        "live"
    );
    let h = health(&http, &c.order.url()).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["service"], "order-service");
    assert_eq!(h["dependencies"]["user-service"]["circuit"], "closed");
    assert_eq!(
        h["dependencies"]["notification-service"]["circuit"],
        "closed"
    );

    let user_addr = c.user.addr;
    c.user.stop().await.unwrap();
    for _ in 0..5 {
        let res = http.post(&orders, &token, &order_body(1)).await;
        assert_eq!(res.status, StatusCode::CREATED);
        assert_eq!(res.json["user"]["source"], "cache");
    }
    let h = health(&http, &c.order.url()).await;
    let dep = &h["dependencies"]["user-service"];
    assert_eq!(dep["circuit"], "open", "{h:#}");
    assert!(dep["retryAfter"].as_f64().unwrap() > 0.0);
    assert!(
        dep["rejected"].as_u64().unwrap() >= 3,
        "the open breaker fails fast: {dep}"
    );
    assert_eq!(dep["timesOpened"], 1);
    assert!(dep.get("times_opened").is_none(), "camelCase only: {dep}");
    assert!(h["outbox"]["pending"].is_u64());

    let text = scrape(&http, &c.order.url()).await;
    let open = ["breaker=\"user-service\"", "state=\"open\""];
    assert_eq!(sample(&text, "circuit_breaker_state", &open), Some(1.0));
    assert_eq!(
        sample(
            &text,
            "circuit_breaker_state",
            &["breaker=\"user-service\"", "state=\"closed\""]
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "circuit_breaker_transitions_total",
            &["breaker=\"user-service\"", "from=\"closed\"", "to=\"open\""]
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            "circuit_breaker_rejected_calls_total",
            &["breaker=\"user-service\""]
        )
        .unwrap()
            >= 3.0
    );

    // Back: after the open duration the next order probes, and closes it.
    c.user = start_user(&c.data, &c.keys, Some(user_addr)).await.0;
    let breaker = c.orders.upstream.users.breaker().clone();
    tokio::time::sleep(breaker.retry_after().unwrap_or_default()).await;
    let res = http.post(&orders, &token, &order_body(1)).await;
    assert_eq!(res.json["user"]["source"], "live");
    assert_eq!(
        health(&http, &c.order.url()).await["dependencies"]["user-service"]["circuit"],
        "closed"
    );
    let text = scrape(&http, &c.order.url()).await;
    for (from, to) in [("open", "half_open"), ("half_open", "closed")] {
        let labels = [
            "breaker=\"user-service\"",
            &format!("from=\"{from}\""),
            &format!("to=\"{to}\""),
        ];
        assert_eq!(
            sample(&text, "circuit_breaker_transitions_total", &labels),
            Some(1.0),
            "{from} → {to}"
        );
    }
}

async fn metrics_carry_every_family() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    assert_eq!(
        http.post(&orders, &token, &order_body(1)).await.status,
        StatusCode::CREATED
    );
    // An auth failure and a retry to count.
    let refused = http
        .send(
            Method::GET,
            &format!("{orders}/1"),
            Some("nonsense"),
            &[],
            "",
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    c.users.server.faults.set_error_rate(0.5);
    for _ in 0..2 {
        http.post(&orders, &token, &order_body(2)).await;
    }
    c.drained(Duration::from_secs(10)).await;
    // A transition to count (an operator forcing a breaker open and back).
    let breaker = c.orders.upstream.notifications.breaker();
    breaker.force_open();
    breaker.reset();

    let text = scrape(&http, &c.order.url()).await;
    for family in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "auth_failures_total",
        "auth_verified_total",
        "circuit_breaker_state",
        "circuit_breaker_transitions_total",
        "circuit_breaker_rejected_calls_total",
        "circuit_breaker_failure_rate",
        "retry_attempts_total",
        "retry_budget_exhausted_total",
        "outbox_pending_notifications",
        "outbox_deliveries_total",
        "user_copy_lookups_total",
    ] {
        assert!(
            text.contains(&format!("\n{family}")),
            "{family} missing from:\n{text}"
        );
    }
    assert_eq!(
        sample(
            &text,
            "http_requests_total",
            &["method=\"POST\"", "route=\"/orders\"", "status=\"201\""]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&text, "auth_failures_total", &["reason=\"malformed\""]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "outbox_pending_notifications", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "outbox_deliveries_total", &["result=\"delivered\""]),
        Some(3.0)
    );
    assert!(
        sample(
            &text,
            "retry_attempts_total",
            &["target=\"user-service\"", "reason=\"status_503\""]
        )
        .unwrap()
            >= 1.0
    );
    assert!(text.contains("# TYPE http_request_duration_seconds histogram"));

    // The user service's own registry: requests by route template.
    let text = scrape(&http, &c.user.url()).await;
    assert!(
        sample(
            &text,
            "http_requests_total",
            &["route=\"/users/{id}\"", "status=\"200\""]
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
}

async fn the_callers_request_id_reaches_the_user_services_logs() {
    logs::capture();
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let id = request_id("rid");
    let res = http
        .post_with(
            &format!("{}/orders", c.order.url()),
            &token,
            &[("x-request-id", id.as_str())],
            &order_body(1),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.headers["x-request-id"], id.as_str());

    let lines = logs::lines_with(&id);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(USER_SERVICE) && l.contains("/users/1")),
        "the user service logged the call with the caller's id: {lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(ORDER_SERVICE) && l.contains("order created"))
    );

    // Without one, the edge makes one and answers with it.
    let res = http
        .post(&format!("{}/orders", c.order.url()), &token, &order_body(1))
        .await;
    let made = res.headers["x-request-id"].to_str().unwrap();
    assert_eq!(made.len(), 32);
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
}

/// A caller cannot open the order service's breaker of a healthy user
/// service by sending tiny budgets: below the floor the order service
/// answers 504 at once without calling anyone; above it, a lookup cut
/// short by the caller's deadline is answered 504 (marked, so the caller's
/// own breaker does not count it either) and is not a breaker failure.
async fn a_callers_tiny_budget_never_opens_the_breaker_of_a_healthy_user_service() {
    let mut resilience = fast_resilience();
    resilience.breaker_minimum_calls = 4;
    let c = Cluster::start_with(resilience).await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    let with_budget = |ms: &'static str| [("x-request-budget-ms", ms)];

    for _ in 0..10 {
        let res = http
            .post_with(&orders, &token, &with_budget("1"), &order_body(1))
            .await;
        assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", res.json);
        assert_eq!(res.json["error"], "deadline_exceeded");
        assert_eq!(res.headers["x-request-budget-ms"], "0");
    }
    let users = c.orders.upstream.users.breaker();
    assert_eq!(users.stats().calls, 0, "below the floor nobody is called");

    // Slower than the budget, not broken.
    c.users
        .server
        .faults
        .set_latency(Duration::from_millis(300));
    for _ in 0..6 {
        let res = http
            .post_with(&orders, &token, &with_budget("100"), &order_body(2))
            .await;
        assert_eq!(res.status, StatusCode::GATEWAY_TIMEOUT, "{:?}", res.json);
        assert_eq!(res.headers["x-request-budget-ms"], "0");
    }
    let m = users.stats();
    assert_eq!(m.state, CircuitState::Closed);
    assert_eq!(
        m.failures, 0,
        "a caller's deadline is not the user service's failure"
    );
    assert_eq!(c.orders.upstream.users.retry_stats().retries, 0);

    // And the next order for a user never seen goes through, live.
    c.users.server.faults.set_latency(Duration::ZERO);
    let res = http.post(&orders, &token, &order_body(3)).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["user"]["source"], "live");
}

integration_tests::on_both_backends!(
    a_slow_user_service_times_out_each_attempt_retries_and_falls_back,
    half_the_user_requests_failing_is_absorbed_by_retries_under_a_60_percent_threshold,
    half_the_user_requests_failing_reaches_the_default_threshold_and_opens,
    a_stopped_user_service_opens_the_breaker_visibly_and_it_closes_after_return,
    metrics_carry_every_family,
    the_callers_request_id_reaches_the_user_services_logs,
    a_callers_tiny_budget_never_opens_the_breaker_of_a_healthy_user_service,
);
