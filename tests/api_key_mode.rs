//! `--service-auth api-key`: the order flow and both outages with API keys
//! in place of tokens, over real sockets on 127.0.0.1, and the refusals
//! and a key rotation at a running service.

use std::time::Duration;

use demo_services::auth::{
    API_GATEWAY, ApiKeyRing, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, SERVICES,
};
use demo_services::order::UserTransport;
use http::{Method, StatusCode};
use integration_tests::{
    Answer, Cluster, Http, fast_resilience, order_body, start_notification, start_order, start_user,
};
use tower_circuit::breaker::CircuitState;

/// Version 1 of every service's key, fixed so a test can name them.
fn ring() -> ApiKeyRing {
    SERVICES
        .iter()
        .fold(ApiKeyRing::ephemeral(), |ring, service| {
            ring.with_key(service, 1, &format!("{service}-v1-0123456789abcdef"))
        })
}

fn key_of(service: &str, version: u32) -> String {
    format!("{service}-v{version}-0123456789abcdef")
}

async fn start() -> Cluster {
    Cluster::start_keyed(
        Keys::api_keys(ring()),
        UserTransport::Http,
        fast_resilience(),
    )
    .await
}

/// `method url` as `service` with `key` (`None`: that header left out).
async fn call(
    method: Method,
    url: &str,
    service: Option<&str>,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Answer {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(service) = service {
        headers.push(("x-service-name", service));
    }
    if let Some(key) = key {
        headers.push(("x-api-key", key));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    Http::default()
        .send(method, url, None, &headers, body)
        .await
}

/// `POST /orders` at the order service at `url`, as the gateway.
async fn place(url: &str, user: i64) -> Answer {
    call(
        Method::POST,
        &format!("{url}/orders"),
        Some(API_GATEWAY),
        Some(&key_of(API_GATEWAY, 1)),
        Some(&order_body(user)),
    )
    .await
}

/// The notifications of order `id` at the notification service at `url`,
/// read as the gateway.
async fn notifications_of(url: &str, id: i64) -> usize {
    let res = call(
        Method::GET,
        &format!("{url}/notifications?orderId={id}"),
        Some(API_GATEWAY),
        Some(&key_of(API_GATEWAY, 1)),
        None,
    )
    .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json);
    res.json["notifications"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_end_to_end_on_api_keys() {
    let c = start().await;
    let res = place(&c.order.url(), 1).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["user"]["source"], "live");
    assert_eq!(res.json["user"]["name"], "Ada Lovelace");
    c.drained(Duration::from_secs(10)).await;
    let id = res.json["id"].as_i64().unwrap();
    assert_eq!(notifications_of(&c.notification.url(), id).await, 1);
    // No token crossed: the notification service saw API keys only.
    let accepted = c.users.server.auth.api_key().expect("API-key mode").stats();
    assert!(accepted.accepted() >= 1);
    assert!(c.users.server.auth.jwt().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_fetches_users_over_grpc_with_its_key_in_the_metadata() {
    let c = Cluster::start_keyed(
        Keys::api_keys(ring()),
        UserTransport::Grpc,
        fast_resilience(),
    )
    .await;
    let res = place(&c.order.url(), 2).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["user"]["source"], "live");
    assert_eq!(res.json["user"]["name"], "Grace Hopper");
    let stats = c.users.server.auth.api_key().expect("API-key mode").stats();
    assert_eq!(stats.accepted(), 1, "one GetUser, with order-service's key");
    assert_eq!(stats.rejected_total(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_service_down_uses_the_cached_user_then_503_on_api_keys() {
    let mut c = start().await;
    assert_eq!(
        place(&c.order.url(), 1).await.json["user"]["source"],
        "live"
    );
    let user_addr = c.user.addr;
    c.user.stop().await.unwrap();

    let cached = place(&c.order.url(), 1).await;
    assert_eq!(cached.status, StatusCode::CREATED, "{:?}", cached.json);
    assert_eq!(cached.json["user"]["source"], "cache");
    let unseen = place(&c.order.url(), 2).await;
    assert_eq!(unseen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unseen.error(), "user_service_unavailable");
    let breaker = c.orders.upstream.users.breaker().clone();
    assert_eq!(breaker.state(), CircuitState::Open);

    c.user = start_user(&c.data, &c.keys, Some(user_addr)).await.0;
    // Bounded by the breaker's own open duration (300 ms).
    tokio::time::sleep(breaker.retry_after().unwrap_or_default()).await;
    let back = place(&c.order.url(), 2).await;
    assert_eq!(back.status, StatusCode::CREATED, "{:?}", back.json);
    assert_eq!(back.json["user"]["source"], "live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_service_down_orders_succeed_and_arrive_after_on_api_keys() {
    let mut c = start().await;
    let note_addr = c.notification.addr;
    c.notification.stop().await.unwrap();
    let res = place(&c.order.url(), 3).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["notification"], "queued");
    assert!(c.orders.outbox.pending() >= 1);

    c.notification = start_notification(&c.data, &c.keys, Some(note_addr))
        .await
        .0;
    c.drained(Duration::from_secs(10)).await;
    assert_eq!(
        notifications_of(&c.notification.url(), res.json["id"].as_i64().unwrap()).await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_an_unknown_version_or_a_missing_header_is_401() {
    let c = start().await;
    let url = format!("{}/users/1", c.user.url());
    let ok = call(
        Method::GET,
        &url,
        Some(API_GATEWAY),
        Some(&key_of(API_GATEWAY, 1)),
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.json);

    let refusals = [
        // Another service's key under the gateway's name.
        (
            Some(API_GATEWAY),
            Some(key_of(ORDER_SERVICE, 1)),
            "invalid_api_key",
        ),
        // A version the service never accepted.
        (
            Some(API_GATEWAY),
            Some(key_of(API_GATEWAY, 2)),
            "invalid_api_key",
        ),
        (Some(API_GATEWAY), None, "missing_api_key"),
        (None, Some(key_of(API_GATEWAY, 1)), "missing_api_key"),
        // A name nobody has keys for.
        (
            Some("billing-service"),
            Some(key_of(API_GATEWAY, 1)),
            "invalid_api_key",
        ),
    ];
    for (service, key, error) in refusals {
        let res = call(Method::GET, &url, service, key.as_deref(), None).await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{service:?}");
        assert_eq!(res.error(), error, "{service:?}");
    }
    // A token is no credential in this mode.
    let res = Http::default()
        .send(Method::GET, &url, Some("a.b.c"), &[], "")
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_permission_is_forbidden_on_api_keys() {
    let c = start().await;
    // notification-service may read users, not write them.
    let res = call(
        Method::POST,
        &format!("{}/users", c.user.url()),
        Some(NOTIFICATION_SERVICE),
        Some(&key_of(NOTIFICATION_SERVICE, 1)),
        Some(&serde_json::json!({ "name": "Mallory", "email": "m@example.com" })),
    )
    .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{:?}", res.json);
    assert_eq!(res.error(), "insufficient_scope");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_in_both_versions_then_the_old_one_is_refused() {
    let mut c = start().await;
    let user_addr = c.user.addr;
    let order_addr = c.order.addr;
    let new_key = key_of(ORDER_SERVICE, 2);
    let rotating = ring().with_key(ORDER_SERVICE, 2, &new_key);

    // Step 1: the user service accepts v1 and v2; the order service still
    // sends v1.
    c.user.stop().await.unwrap();
    c.user = start_user(&c.data, &Keys::api_keys(rotating.clone()), Some(user_addr))
        .await
        .0;
    let users = format!("{}/users/1", c.user.url());
    for version in [1, 2] {
        let res = call(
            Method::GET,
            &users,
            Some(ORDER_SERVICE),
            Some(&key_of(ORDER_SERVICE, version)),
            None,
        )
        .await;
        assert_eq!(res.status, StatusCode::OK, "v{version}: {:?}", res.json);
    }
    let res = place(&c.order.url(), 1).await;
    assert_eq!(res.json["user"]["source"], "live", "v1 still works");

    // Step 2: the order service moves to its newest key, v2.
    c.order.stop().await.unwrap();
    let (order, orders) = start_order(
        &c.data,
        &Keys::api_keys(rotating.clone()),
        &c.settings,
        Some(order_addr),
    )
    .await;
    c.order = order;
    c.orders = orders;

    // Step 3: v1 is removed at the user service.
    c.user.stop().await.unwrap();
    let rotated = rotating.without_version(ORDER_SERVICE, 1);
    c.user = start_user(&c.data, &Keys::api_keys(rotated), Some(user_addr))
        .await
        .0;
    let old = call(
        Method::GET,
        &users,
        Some(ORDER_SERVICE),
        Some(&key_of(ORDER_SERVICE, 1)),
        None,
    )
    .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old.error(), "invalid_api_key");
    // The order service sends v2, so its lookups are live, not cached.
    let res = place(&c.order.url(), 2).await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    assert_eq!(res.json["user"]["source"], "live");
    assert_eq!(res.json["user"]["name"], "Grace Hopper");
}
