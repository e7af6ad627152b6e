//! Calls between the services are authenticated: a token for another
//! audience, a caller without the route's permission, or no token at all
//! are refused before any handler runs.

use demo_services::auth::{API_GATEWAY, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use http::{Method, StatusCode};
use integration_tests::{Cluster, Http, order_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    let c = Cluster::start().await;
    // order-service's token for the notification service, replayed at the
    // user service.
    let token = c.token(ORDER_SERVICE, NOTIFICATION_SERVICE);
    let res = Http::default()
        .get(&format!("{}/users/1", c.user.url()), &token)
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.error(), "invalid_token");
    let challenge = res.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_without_the_permission_is_forbidden() {
    let c = Cluster::start().await;
    let http = Http::default();
    // notification-service may read users but not create them.
    let token = c.token(NOTIFICATION_SERVICE, USER_SERVICE);
    assert_eq!(
        http.get(&format!("{}/users/1", c.user.url()), &token)
            .await
            .status,
        StatusCode::OK
    );
    let res = http
        .post(
            &format!("{}/users", c.user.url()),
            &token,
            &serde_json::json!({ "name": "Mallory", "email": "m@example.com" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error(), "insufficient_scope");
    let page = http
        .get(
            &format!("{}/users?limit=100", c.user.url()),
            &c.gateway(USER_SERVICE),
        )
        .await;
    assert_eq!(
        page.json["users"].as_array().unwrap().len(),
        3,
        "nothing created"
    );

    // user-service may read orders but not place them.
    let res = http
        .post(
            &format!("{}/orders", c.order.url()),
            &c.token(USER_SERVICE, ORDER_SERVICE),
            &order_body(1),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error(), "insufficient_scope");
    assert_eq!(c.orders.outbox.pending(), 0);
}

/// A token notification-service signs with its own, real key, claiming
/// `permissions` it was never given.
fn self_granted(c: &Cluster, audience: &str, permissions: &[&str]) -> String {
    c.keys
        .token(
            NOTIFICATION_SERVICE,
            audience,
            Some(permissions.iter().map(|p| p.to_string()).collect()),
            std::time::Duration::from_secs(300),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cannot_grant_itself_the_right_to_place_orders() {
    let c = Cluster::start().await;
    let token = self_granted(&c, ORDER_SERVICE, &["write:orders", "read:orders"]);
    let res = Http::default()
        .post(&format!("{}/orders", c.order.url()), &token, &order_body(1))
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{:?}", res.json);
    assert_eq!(res.error(), "insufficient_scope");
    assert_eq!(c.orders.outbox.pending(), 0, "no order was placed");
    let stats = c.orders.server.auth.jwt().unwrap().stats();
    assert_eq!(stats.permissions_trimmed, 1, "the receiver counted it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_cannot_grant_itself_the_right_to_change_users() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = self_granted(&c, USER_SERVICE, &["read:users", "write:users"]);
    let res = http
        .send(
            Method::PUT,
            &format!("{}/users/1", c.user.url()),
            Some(&token),
            &[("content-type", "application/json")],
            serde_json::json!({ "name": "Mallory", "email": "m@example.com" }).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{:?}", res.json);
    assert_eq!(res.error(), "insufficient_scope");
    // What notification-service is granted still works with the same token.
    let user = http.get(&format!("{}/users/1", c.user.url()), &token).await;
    assert_eq!(user.status, StatusCode::OK);
    assert_eq!(user.json["name"], "Ada Lovelace", "unchanged");
    assert_eq!(
        c.users
            .server
            .auth
            .jwt()
            .unwrap()
            .stats()
            .permissions_trimmed,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_service_may_not_read_notifications() {
    let c = Cluster::start().await;
    let res = Http::default()
        .get(
            &format!("{}/notifications?userId=1", c.notification.url()),
            &c.token(ORDER_SERVICE, NOTIFICATION_SERVICE),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_is_401_with_a_bearer_challenge() {
    let c = Cluster::start().await;
    let res = Http::default()
        .send(
            Method::GET,
            &format!("{}/orders/1", c.order.url()),
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers["www-authenticate"], "Bearer");
    assert!(res.json["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_keys_the_services_do_not_trust_is_refused() {
    let c = Cluster::start().await;
    let stranger = demo_services::auth::Keys::ephemeral();
    let token = stranger
        .token(
            API_GATEWAY,
            ORDER_SERVICE,
            None,
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    let res = Http::default()
        .post(&format!("{}/orders", c.order.url()), &token, &order_body(1))
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(c.orders.outbox.pending(), 0);
}
