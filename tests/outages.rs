//! The two outages the order flow is built for, with millisecond settings:
//! the user service down (cached users, then 503 with Retry-After once the
//! breaker is open, then live again) and the notification service down
//! (orders still 201, every notification delivered once after it returns,
//! also across an order-service restart).

use integration_tests::Data;
use std::time::Duration;

use demo_services::auth::{API_GATEWAY, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE};
use demo_services::order::{Resilience, Settings, UserTransport};
use http::{Method, StatusCode};
use integration_tests::{
    Cluster, Http, fast_resilience, order_body, start_notification, start_order, start_user,
};
use tower_circuit::breaker::CircuitState;

async fn user_service_down_uses_the_cached_user_then_fails_fast_then_recovers() {
    user_service_down(UserTransport::Http).await;
}

async fn user_service_down_over_grpc_uses_the_cached_user_then_fails_fast_then_recovers() {
    user_service_down(UserTransport::Grpc).await;
}

/// The user-service outage, with users fetched over `transport`: the same
/// answers either way.
async fn user_service_down(transport: UserTransport) {
    let mut c = Cluster::start_over(transport, fast_resilience()).await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());

    // User 1 is seen once while the service is up, over the transport
    // asked for (the user service counts requests by route).
    let live = http.post(&orders, &token, &order_body(1)).await;
    assert_eq!(live.json["user"]["source"], "live");
    let metrics = http
        .send(
            Method::GET,
            &format!("{}/metrics", c.user.url()),
            None,
            &[],
            "",
        )
        .await;
    let metrics = String::from_utf8_lossy(&metrics.raw);
    let route = match transport {
        UserTransport::Http => "route=\"/users/{id}\"",
        UserTransport::Grpc => "route=\"/user.UserService/GetUser\"",
    };
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total") && l.contains(route)),
        "the user service saw {route}:\n{metrics}"
    );

    let user_addr = c.user.addr;
    c.user.stop().await.unwrap();

    // A known user: the order goes through with the kept copy.
    let cached = http.post(&orders, &token, &order_body(1)).await;
    assert_eq!(cached.status, StatusCode::CREATED, "{:?}", cached.json);
    assert_eq!(cached.json["user"]["source"], "cache");
    assert_eq!(cached.json["user"]["name"], "Ada Lovelace");

    // An unseen user: 503. The breaker (minimum 2 calls, 50 %) is open by
    // now, so the answer says when to come back.
    let breaker = c.orders.upstream.users.breaker().clone();
    let unseen = http.post(&orders, &token, &order_body(2)).await;
    assert_eq!(
        unseen.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        unseen.json
    );
    assert_eq!(unseen.error(), "user_service_unavailable");
    assert_eq!(breaker.state(), CircuitState::Open);
    let fast = http.post(&orders, &token, &order_body(2)).await;
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = fast.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=1).contains(&retry_after),
        "300 ms rounds up to 1 s, got {retry_after}"
    );
    let rejected = breaker.stats().rejected;
    assert!(
        rejected >= 1,
        "the open breaker refused the call without sending it"
    );
    // The first refusal asked the database for a copy of user 2; the
    // second was answered from memory, without a query.
    let lookups = copy_lookups(&c.orders.metrics());
    assert_eq!(lookups, [("found", 1), ("missing", 1), ("remembered", 1)]);

    // Back up on the same address; after the open duration a probe closes
    // the breaker and users are live again.
    c.user = start_user(&c.data, &c.keys, Some(user_addr)).await.0;
    tokio::time::sleep(breaker.retry_after().unwrap_or_default()).await;
    let back = http.post(&orders, &token, &order_body(2)).await;
    assert_eq!(back.status, StatusCode::CREATED, "{:?}", back.json);
    assert_eq!(back.json["user"]["source"], "live");
    assert_eq!(back.json["user"]["name"], "Grace Hopper");
    assert_eq!(breaker.state(), CircuitState::Closed);

    // User 2 has a copy now, and is no longer remembered as having none:
    // down again, the next order uses the copy.
    c.user.stop().await.unwrap();
    let copy = http.post(&orders, &token, &order_body(2)).await;
    assert_eq!(copy.status, StatusCode::CREATED, "{:?}", copy.json);
    assert_eq!(copy.json["user"]["source"], "cache");
    let lookups = copy_lookups(&c.orders.metrics());
    assert_eq!(lookups, [("found", 2), ("missing", 1), ("remembered", 1)]);
}

/// `user_copy_lookups_total` by result, from the order service's
/// `/metrics` text.
fn copy_lookups(metrics: &str) -> [(&'static str, u64); 3] {
    ["found", "missing", "remembered"].map(|result| {
        let series = format!("user_copy_lookups_total{{result=\"{result}\"}} ");
        let n = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in:\n{metrics}"));
        (result, n.trim().parse().unwrap())
    })
}

async fn notification_service_down_orders_still_succeed_and_notifications_arrive_once() {
    let mut c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());

    let note_addr = c.notification.addr;
    c.notification.stop().await.unwrap();

    let mut ids = Vec::new();
    for user in [1, 2, 3, 1] {
        let res = http.post(&orders, &token, &order_body(user)).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        assert_eq!(res.json["notification"], "queued");
        ids.push(res.json["id"].as_i64().unwrap());
    }
    assert!(
        c.orders.outbox.pending() >= 1,
        "undelivered notifications are kept"
    );

    c.notification = start_notification(&c.data, &c.keys, Some(note_addr))
        .await
        .0;
    // The breaker may be open: the backlog drains once it lets a probe by.
    c.drained(Duration::from_secs(10)).await;

    let reader = c.gateway(NOTIFICATION_SERVICE);
    for id in &ids {
        let list = http
            .get(
                &format!("{}/notifications?orderId={id}", c.notification.url()),
                &reader,
            )
            .await;
        assert_eq!(
            list.json["notifications"].as_array().unwrap().len(),
            1,
            "order {id}"
        );
    }
    let ada = http
        .get(
            &format!("{}/notifications?userId=1", c.notification.url()),
            &reader,
        )
        .await;
    assert_eq!(ada.json["notifications"].as_array().unwrap().len(), 2);
}

async fn pending_notifications_survive_an_order_service_restart() {
    let mut c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);

    let note_addr = c.notification.addr;
    c.notification.stop().await.unwrap();
    let mut ids = Vec::new();
    for user in [1, 2] {
        let res = http
            .post(
                &format!("{}/orders", c.order.url()),
                &token,
                &order_body(user),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED);
        ids.push(res.json["id"].as_i64().unwrap());
    }
    // Stop the order service with both notifications undelivered.
    let order_addr = c.order.addr;
    c.order.stop().await.unwrap();
    assert_eq!(c.orders.store.pending().await.unwrap(), 2);

    // Notification service back, then a new order-service process on the
    // same database: it picks the records up and delivers them.
    c.notification = start_notification(&c.data, &c.keys, Some(note_addr))
        .await
        .0;
    let (order, orders) = start_order(&c.data, &c.keys, &c.settings, Some(order_addr)).await;
    c.order = order;
    c.orders = orders;
    assert_eq!(
        c.orders.outbox.pending(),
        2,
        "the new process sees the backlog"
    );
    c.drained(Duration::from_secs(10)).await;

    let reader = c.gateway(NOTIFICATION_SERVICE);
    for id in &ids {
        let list = http
            .get(
                &format!("{}/notifications?orderId={id}", c.notification.url()),
                &reader,
            )
            .await;
        assert_eq!(
            list.json["notifications"].as_array().unwrap().len(),
            1,
            "order {id}"
        );
        let order = http
            .get(&format!("{}/orders/{id}", c.order.url()), &token)
            .await;
        assert_eq!(order.json["notification"], "delivered");
    }
}

async fn shutdown_is_prompt_while_the_notification_service_never_answers() {
    // A "notification service" that accepts connections and never answers.
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let (accepted_tx, mut accepted_rx) = tokio::sync::mpsc::channel::<()>(16);
    let black_hole = tokio::spawn(async move {
        let mut held = Vec::new();
        // A handful of connections at most: one delivery at a time.
        while held.len() < 16 {
            let Ok((socket, _)) = hole.accept().await else {
                break;
            };
            held.push(socket);
            let _ = accepted_tx.try_send(());
        }
        std::future::pending::<()>().await;
    });

    let keys = Keys::ephemeral();
    let data = Data::new().await;
    let (user, _) = start_user(&data, &keys, None).await;
    // Each delivery may take 25 s (within the outbox's 30 s lease): only
    // shutdown can cut it short.
    let resilience = Resilience {
        timeout_write: Duration::from_secs(20),
        call_deadline: Duration::from_secs(25),
        ..fast_resilience()
    };
    let settings = Settings {
        user_url: user.url(),
        notification_url: format!("http://{hole_addr}"),
        user_transport: Default::default(),
        resilience,
        tls: None,
        nats: None,
    };
    let (order, orders) = start_order(&data, &keys, &settings, None).await;
    let http = Http::default();
    let token = keys
        .token(API_GATEWAY, ORDER_SERVICE, None, Duration::from_secs(60))
        .unwrap();
    let mut ids = Vec::new();
    for user_id in [1, 2, 3, 1] {
        let res = http
            .post(
                &format!("{}/orders", order.url()),
                &token,
                &order_body(user_id),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        ids.push(res.json["id"].as_i64().unwrap());
    }
    // A delivery is in flight, stuck in the black hole.
    tokio::time::timeout(Duration::from_secs(10), accepted_rx.recv())
        .await
        .expect("the outbox connects to the notification service");

    let began = tokio::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(12), order.stop())
        .await
        .expect("the order service stops well within its grace")
        .unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "shutdown took {took:?}");
    assert_eq!(
        orders.store.pending().await.unwrap(),
        4,
        "the abandoned delivery and the rest stay pending"
    );
    black_hole.abort();

    // After a restart against a notification service that answers, every
    // notification is delivered, once, at once: the stopped process gave
    // its leases back rather than leave them to run out (30 s).
    let (notification, _) = start_notification(&data, &keys, None).await;
    let settings = Settings {
        notification_url: notification.url(),
        user_transport: Default::default(),
        resilience: fast_resilience(),
        ..settings
    };
    let (order, orders) = start_order(&data, &keys, &settings, None).await;
    let mut pending = orders.outbox.watch_pending();
    tokio::time::timeout(Duration::from_secs(10), pending.wait_for(|n| *n == 0))
        .await
        .expect("delivered after the restart")
        .unwrap();
    let reader = keys
        .token(
            API_GATEWAY,
            NOTIFICATION_SERVICE,
            None,
            Duration::from_secs(60),
        )
        .unwrap();
    for id in &ids {
        let list = http
            .get(
                &format!("{}/notifications?orderId={id}", notification.url()),
                &reader,
            )
            .await;
        assert_eq!(
            list.json["notifications"].as_array().unwrap().len(),
            1,
            "order {id}"
        );
    }
    order.stop().await.unwrap();
}

integration_tests::on_both_backends!(
    user_service_down_uses_the_cached_user_then_fails_fast_then_recovers,
    user_service_down_over_grpc_uses_the_cached_user_then_fails_fast_then_recovers,
    notification_service_down_orders_still_succeed_and_notifications_arrive_once,
    pending_notifications_survive_an_order_service_restart,
    shutdown_is_prompt_while_the_notification_service_never_answers,
);
