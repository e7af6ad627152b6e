//! The order flow across three real servers on loopback: happy path,
//! idempotent replay, unknown users, reads.

use std::time::Duration;

use demo_services::auth::{API_GATEWAY, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use http::StatusCode;
use integration_tests::{Cluster, Http, order_body};
use serde_json::json;

async fn an_order_fetches_the_user_and_its_notification_is_delivered_once() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);

    let res = http
        .post(&format!("{}/orders", c.order.url()), &token, &order_body(1))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    let order = &res.json;
    assert_eq!(order["userId"], 1);
    assert_eq!(order["total"], json!(19.98));
    assert!(order["total"].is_f64(), "total is a JSON number");
    assert_eq!(order["status"], "created");
    assert_eq!(order["user"]["name"], "Ada Lovelace");
    assert_eq!(order["user"]["email"], "ada@example.com");
    assert_eq!(order["user"]["source"], "live");
    assert_eq!(order["notification"], "queued");
    assert_eq!(order["items"][0]["productId"], "p-1");
    assert!(order["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = order["id"].as_i64().unwrap();

    c.drained(Duration::from_secs(10)).await;
    let notes = http
        .get(
            &format!("{}/notifications?orderId={id}", c.notification.url()),
            &c.gateway(NOTIFICATION_SERVICE),
        )
        .await;
    assert_eq!(notes.status, StatusCode::OK);
    let list = notes.json["notifications"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["userId"], 1);
    assert!(
        list[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("#{id}"))
    );

    // Reading the order back shows the delivery.
    let again = http
        .get(&format!("{}/orders/{id}", c.order.url()), &token)
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.json["notification"], "delivered");
    assert_eq!(again.json["total"], json!(19.98));
}

async fn the_same_idempotency_key_and_body_returns_the_same_order_and_creates_nothing() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let url = format!("{}/orders", c.order.url());
    let key = [("idempotency-key", "checkout-42")];

    let first = http.post_with(&url, &token, &key, &order_body(2)).await;
    assert_eq!(first.status, StatusCode::CREATED);
    // Same body with other whitespace and key order: the same request.
    let reordered = json!({
        "items": [{ "unitPrice": 9.99, "quantity": 2, "productId": "p-1" }],
        "userId": 2
    });
    let second = http.post_with(&url, &token, &key, &reordered).await;
    assert_eq!(second.status, StatusCode::CREATED);
    assert_eq!(second.json["id"], first.json["id"]);
    assert_eq!(second.headers["idempotent-replayed"], "true");

    let list = http
        .get(&format!("{}/orders?userId=2", c.order.url()), &token)
        .await;
    assert_eq!(list.json["orders"].as_array().unwrap().len(), 1);

    // A different body under the same key is refused and stores nothing.
    let other = http.post_with(&url, &token, &key, &order_body(3)).await;
    assert_eq!(other.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.error(), "idempotency_key_reused");
    let list = http
        .get(&format!("{}/orders?userId=3", c.order.url()), &token)
        .await;
    assert_eq!(list.json["orders"].as_array().unwrap().len(), 0);

    c.drained(Duration::from_secs(10)).await;
    let notes = http
        .get(
            &format!("{}/notifications?userId=2", c.notification.url()),
            &c.gateway(NOTIFICATION_SERVICE),
        )
        .await;
    assert_eq!(notes.json["notifications"].as_array().unwrap().len(), 1);
}

async fn an_unknown_user_is_404_not_retried_and_not_a_breaker_failure() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    for _ in 0..3 {
        let res = http
            .post(
                &format!("{}/orders", c.order.url()),
                &token,
                &order_body(999),
            )
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        assert_eq!(res.error(), "user_not_found");
    }
    let metrics = c.orders.upstream.users.breaker().stats();
    // Recorded, as successes: a 404 says the service works.
    assert_eq!(metrics.calls, 3, "{metrics:?}");
    assert_eq!(metrics.failures, 0, "{metrics:?}");
    assert_eq!(c.orders.upstream.users.retry_stats().retries, 0);
    let list = http
        .get(&format!("{}/orders?userId=999", c.order.url()), &token)
        .await;
    assert_eq!(list.json["orders"].as_array().unwrap().len(), 0);
    assert_eq!(c.orders.outbox.pending(), 0);
}

async fn orders_are_read_back_by_id_and_by_user() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let url = format!("{}/orders", c.order.url());
    let a = http.post(&url, &token, &order_body(1)).await.json["id"]
        .as_i64()
        .unwrap();
    let b = http.post(&url, &token, &order_body(1)).await.json["id"]
        .as_i64()
        .unwrap();
    assert_ne!(a, b);
    let list = http.get(&format!("{url}?userId=1"), &token).await;
    let ids: Vec<i64> = list.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![a, b]);
    let missing = http.get(&format!("{url}/424242"), &token).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error(), "order_not_found");
}

async fn totals_are_exact_in_cents() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    // 3 × 0.1 is 0.30000000000000004 in floats; 0.1 + 0.2 is too.
    let body = json!({ "userId": 1, "items": [
        { "productId": "p-1", "quantity": 3, "unitPrice": 0.1 },
        { "productId": "p-2", "quantity": 1, "unitPrice": 0.1 },
        { "productId": "p-3", "quantity": 1, "unitPrice": 0.2 },
        { "productId": "p-4", "quantity": 7, "unitPrice": 1.15 }
    ] });
    let res = http
        .post(&format!("{}/orders", c.order.url()), &token, &body)
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
    let text = String::from_utf8_lossy(&res.raw).into_owned();
    assert!(text.contains(r#""total":8.65"#), "{text}");
    assert!(text.contains(r#""unitPrice":0.1}"#), "{text}");
    let id = res.json["id"].as_i64().unwrap();
    let again = http
        .get(&format!("{}/orders/{id}", c.order.url()), &token)
        .await;
    assert!(
        String::from_utf8_lossy(&again.raw).contains(r#""total":8.65"#),
        "read back from the database: {:?}",
        again.json
    );

    let body =
        json!({ "userId": 1, "items": [{ "productId": "p-1", "quantity": 3, "unitPrice": 0.1 }] });
    let res = http
        .post(&format!("{}/orders", c.order.url()), &token, &body)
        .await;
    assert!(
        String::from_utf8_lossy(&res.raw).contains(r#""total":0.3,"#),
        "{:?}",
        res.json
    );
}

async fn the_user_service_serves_creates_pages_and_updates_users() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(USER_SERVICE);
    let base = c.user.url();

    let ada = http.get(&format!("{base}/users/1"), &token).await;
    assert_eq!(ada.status, StatusCode::OK);
    assert_eq!(ada.json["name"], "Ada Lovelace");
    assert!(ada.json["createdAt"].is_string());
    assert!(ada.json.get("created_at").is_none(), "camelCase only");

    let created = http
        .post(
            &format!("{base}/users"),
            &token,
            &json!({ "name": "Edsger Dijkstra", "email": "ewd@example.com" }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json["id"].as_i64().unwrap();
    assert_eq!(id, 4);

    let dup = http
        .post(
            &format!("{base}/users"),
            &token,
            &json!({ "name": "Other", "email": "ewd@example.com" }),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error(), "email_taken");

    let page = http
        .get(&format!("{base}/users?limit=3&cursor=3"), &token)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.json["nextCursor"].is_null());
    let users = page.json["users"].as_array().unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], 4);

    let put = http
        .send(
            http::Method::PUT,
            &format!("{base}/users/{id}"),
            Some(&token),
            &[("content-type", "application/json")],
            json!({ "name": "E. W. Dijkstra", "email": "ewd@example.com" }).to_string(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json["name"], "E. W. Dijkstra");
    assert_eq!(
        http.get(&format!("{base}/users/{id}"), &token).await.json["name"],
        "E. W. Dijkstra"
    );

    let missing = http.get(&format!("{base}/users/77"), &token).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn the_notification_service_keeps_one_notification_per_order() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.token(ORDER_SERVICE, NOTIFICATION_SERVICE);
    let url = format!("{}/notifications", c.notification.url());
    let body = json!({ "userId": 1, "orderId": 77, "channel": "email", "message": "hello" });
    let first = http.post(&url, &token, &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = http.post(&url, &token, &body).await;
    assert_eq!(second.status, StatusCode::ACCEPTED);
    assert_eq!(second.json["id"], first.json["id"]);
    let list = http
        .get(
            &format!("{url}?orderId=77"),
            &c.gateway(NOTIFICATION_SERVICE),
        )
        .await;
    assert_eq!(list.json["notifications"].as_array().unwrap().len(), 1);
}

async fn health_needs_no_token() {
    let c = Cluster::start().await;
    let http = Http::default();
    for (running, name) in [
        (&c.user, USER_SERVICE),
        (&c.order, ORDER_SERVICE),
        (&c.notification, NOTIFICATION_SERVICE),
    ] {
        let res = http
            .send(
                http::Method::GET,
                &format!("{}/health", running.url()),
                None,
                &[],
                "",
            )
            .await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.json["status"], "ok");
        assert_eq!(res.json["service"], name);
    }
}

async fn a_notification_squatted_for_a_future_order_loses_to_the_real_one() {
    integration_tests::logs::capture();
    let c = Cluster::start().await;
    let http = Http::default();
    let url = format!("{}/notifications", c.notification.url());
    // The database is fresh: the next order is #1. Callers other than the
    // order service, holding `write:notifications` in their token, try to
    // store its notification first, for another user.
    let squat = json!({ "userId": 2, "orderId": 1, "channel": "email", "message": "pay here" });
    for caller in [API_GATEWAY, USER_SERVICE] {
        let token = c
            .keys
            .token(
                caller,
                NOTIFICATION_SERVICE,
                Some(vec!["write:notifications".to_owned()]),
                Duration::from_secs(60),
            )
            .unwrap();
        let res = http.post(&url, &token, &squat).await;
        assert!(
            matches!(res.status, StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED),
            "{caller}: {} {:?}",
            res.status,
            res.json
        );
        assert!(res.json["error"].is_string(), "a JSON error: {:?}", res.raw);
    }

    // The real order #1: its own notification is delivered and stored.
    let order = http
        .post(
            &format!("{}/orders", c.order.url()),
            &c.gateway(ORDER_SERVICE),
            &order_body(1),
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED);
    assert_eq!(order.json["id"], 1);
    c.drained(Duration::from_secs(10)).await;
    let reader = c.gateway(NOTIFICATION_SERVICE);
    let list = http.get(&format!("{url}?orderId=1"), &reader).await;
    let notes = list.json["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["userId"], 1);
    assert!(notes[0]["message"].as_str().unwrap().contains("#1"));

    // The same order with other content, even from the order service: 409,
    // nothing changes, and the log shows the caller's text escaped.
    let sender = c.token(ORDER_SERVICE, NOTIFICATION_SERVICE);
    // Unique to this run: the suite runs once per engine in one process,
    // and the log capture is the process's.
    let marker = &format!("squat-conflict-{}", c.order.addr.port());
    let other = json!({
        "userId": 2, "orderId": 1, "channel": "email",
        "message": format!("{marker}\nERROR forged line")
    });
    let res = http.post(&url, &sender, &other).await;
    assert_eq!(res.status, StatusCode::CONFLICT, "{:?}", res.json);
    assert_eq!(res.error(), "notification_conflict");
    let same = json!({
        "userId": 1, "orderId": 1, "channel": "email",
        "message": notes[0]["message"]
    });
    let res = http.post(&url, &sender, &same).await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "a redelivery is fine");
    assert_eq!(res.json["id"], notes[0]["id"]);
    let again = http.get(&format!("{url}?orderId=1"), &reader).await;
    assert_eq!(again.json["notifications"], list.json["notifications"]);

    let lines = integration_tests::logs::lines_with(marker);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("\\nERROR forged line"), "{}", lines[0]);
    // Never on a line of its own (the other engine's run has its marker).
    assert!(
        integration_tests::logs::lines_with("ERROR forged line")
            .iter()
            .all(|l| l.contains("squat-conflict-"))
    );
}

integration_tests::on_both_backends!(
    an_order_fetches_the_user_and_its_notification_is_delivered_once,
    the_same_idempotency_key_and_body_returns_the_same_order_and_creates_nothing,
    an_unknown_user_is_404_not_retried_and_not_a_breaker_failure,
    orders_are_read_back_by_id_and_by_user,
    totals_are_exact_in_cents,
    the_user_service_serves_creates_pages_and_updates_users,
    the_notification_service_keeps_one_notification_per_order,
    health_needs_no_token,
    a_notification_squatted_for_a_future_order_loses_to_the_real_one,
);
