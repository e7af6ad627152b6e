//! Two order-service replicas on one PostgreSQL database, as behind a load
//! balancer: idempotency keys raced across both, and an outbox both drain
//! without sending a record twice. (Killing a replica with SIGKILL needs
//! the binary: demo-services/tests/replica_kill.rs.)

use std::time::Duration;

use demo_services::auth::{NOTIFICATION_SERVICE, ORDER_SERVICE};
use http::StatusCode;
use integration_tests::{Backend, Cluster, Http, Running, engines, order_body, start_order};
use serde_json::json;

/// The cluster on PostgreSQL, and a second order replica on its database.
async fn two_replicas() -> Option<(Cluster, Running, demo_services::order::State)> {
    let url = engines::postgres()?;
    Some(
        Backend::Postgres(url)
            .scope(async {
                let c = Cluster::start().await;
                let (second, state) = start_order(&c.data, &c.keys, &c.settings, None).await;
                (c, second, state)
            })
            .await,
    )
}

/// The value of the `/metrics` sample whose line starts with `series`
/// (0 when absent).
async fn sample(http: &Http, url: &str, series: &str) -> f64 {
    let res = http.get(&format!("{url}/metrics"), "").await;
    sample_in(&String::from_utf8_lossy(&res.raw), series)
}

/// The value of the sample of `text` (Prometheus text) whose line starts
/// with `series` (0 when absent).
fn sample_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// 50 requests at once, 5 per key for 10 keys, spread over both replicas:
/// exactly 10 orders; every request answered 201 with its key's order
/// (the losers of each race waited for the winner's commit); the same key
/// with another body is 422 on either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_raced_across_two_replicas_make_one_order_each() {
    let Some((c, second, _)) = two_replicas().await else {
        return;
    };
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let replicas = [c.order.url(), second.url()];
    let body = |key: usize| order_body(1 + (key % 3) as i64);

    let calls = (0..50).map(|i| {
        let (http, token) = (http.clone(), token.clone());
        let key = i % 10;
        let url = format!("{}/orders", replicas[i % 2]);
        async move {
            let key_header = format!("race-{key}");
            let res = http
                .post_with(
                    &url,
                    &token,
                    &[("idempotency-key", &key_header)],
                    &body(key),
                )
                .await;
            (key, res)
        }
    });
    let answers = futures_join_all(calls).await;

    let mut ids = vec![None; 10];
    for (key, res) in &answers {
        assert_eq!(res.status, StatusCode::CREATED, "key {key}: {:?}", res.json);
        let id = res.json["id"].as_i64().expect("an order id");
        let first = *ids[*key].get_or_insert(id);
        assert_eq!(id, first, "key {key}: every answer carries the one order");
        assert_eq!(res.json["userId"], body(*key)["userId"]);
    }
    let mut distinct: Vec<i64> = ids.iter().map(|id| id.unwrap()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "one order per key: {ids:?}");

    // Exactly 10 orders exist, whichever replica is asked.
    let mut total = 0;
    for user in 1..=3 {
        let list = http
            .get(
                &format!("{}/orders?userId={user}", replicas[user % 2]),
                &token,
            )
            .await;
        total += list.json["orders"].as_array().unwrap().len();
    }
    assert_eq!(total, 10);

    // A key reused with another body: 422 on both, nothing stored.
    for url in &replicas {
        let other = json!({
            "userId": 1,
            "items": [{ "productId": "p-9", "quantity": 1, "unitPrice": 1.0 }]
        });
        let res = http
            .post_with(
                &format!("{url}/orders"),
                &token,
                &[("idempotency-key", "race-0")],
                &other,
            )
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{:?}",
            res.json
        );
        assert_eq!(res.error(), "idempotency_key_reused");
    }
    drop(second);
}

/// Orders taken by both replicas are each notified exactly once: both
/// outboxes claim from the one table, and no record is sent by both (the
/// notification service counts redeliveries, and saw none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_drain_one_outbox_sending_each_record_once() {
    let Some((c, second, second_state)) = two_replicas().await else {
        return;
    };
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let replicas = [c.order.url(), second.url()];
    let orders = (0..40).map(|i| {
        let (http, token) = (http.clone(), token.clone());
        let url = format!("{}/orders", replicas[i % 2]);
        async move {
            http.post(&url, &token, &order_body(1 + (i % 3) as i64))
                .await
        }
    });
    for res in futures_join_all(orders).await {
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    }
    // Both see the shared backlog reach zero.
    c.drained(Duration::from_secs(20)).await;
    let mut pending = second_state.outbox.watch_pending();
    tokio::time::timeout(Duration::from_secs(5), pending.wait_for(|n| *n == 0))
        .await
        .expect("the second replica sees the shared backlog drained")
        .unwrap();

    let note = c.notification.url();
    let series = |result: &str| format!("notifications_accepted_total{{result=\"{result}\"}}");
    assert_eq!(
        sample(&http, &note, &series("new")).await,
        40.0,
        "each stored once"
    );
    assert_eq!(
        sample(&http, &note, &series("duplicate")).await,
        0.0,
        "none sent twice"
    );
    let reader = c.gateway(NOTIFICATION_SERVICE);
    let mut stored = 0;
    for user in 1..=3 {
        let list = http
            .get(&format!("{note}/notifications?userId={user}"), &reader)
            .await;
        stored += list.json["notifications"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(stored, 40);
    // Both replicas delivered some: the table really was shared.
    let delivered = |text: &str| sample_in(text, "outbox_deliveries_total{result=\"delivered\"}");
    let first = delivered(&c.orders.metrics());
    let other = delivered(&second_state.metrics());
    assert_eq!(first + other, 40.0, "first {first}, second {other}");
}

/// `join_all` without a dependency: every future polled on its own task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("the request task"));
    }
    out
}
