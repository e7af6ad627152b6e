//! Bad input gets a JSON 4xx naming the problem, and changes nothing.

use demo_services::auth::{ORDER_SERVICE, USER_SERVICE};
use http::{Method, StatusCode};
use integration_tests::{Answer, Cluster, Http};
use serde_json::json;

async fn post_order(c: &Cluster, content_type: Option<&str>, body: &str) -> Answer {
    let mut headers = Vec::new();
    if let Some(ct) = content_type {
        headers.push(("content-type", ct));
    }
    Http::default()
        .send(
            Method::POST,
            &format!("{}/orders", c.order.url()),
            Some(&c.gateway(ORDER_SERVICE)),
            &headers,
            body.to_owned(),
        )
        .await
}

/// Asserts a 400 whose message mentions `needle`, and that no order exists.
async fn assert_rejected(c: &Cluster, res: Answer, status: StatusCode, needle: &str) {
    assert_eq!(res.status, status, "{}", String::from_utf8_lossy(&res.raw));
    assert!(res.json.is_object(), "a JSON body: {:?}", res.raw);
    let message = res.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(needle),
        "message {message:?} names the problem ({needle:?})"
    );
    let http = Http::default();
    for user in 1..=3 {
        let list = http
            .get(
                &format!("{}/orders?userId={user}", c.order.url()),
                &c.gateway(ORDER_SERVICE),
            )
            .await;
        assert_eq!(
            list.json["orders"].as_array().unwrap().len(),
            0,
            "nothing stored"
        );
    }
    assert_eq!(c.orders.outbox.pending(), 0, "nothing queued");
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json() {
    let c = Cluster::start().await;
    let res = post_order(&c, JSON, r#"{"userId": 1, "items": [ "#).await;
    assert_eq!(res.error(), "malformed_json");
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "JSON").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_content_type() {
    let c = Cluster::start().await;
    let res = post_order(&c, None, &integration_tests::order_body(1).to_string()).await;
    assert_eq!(res.error(), "unsupported_content_type");
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "Content-Type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type() {
    let c = Cluster::start().await;
    let res = post_order(
        &c,
        Some("text/plain"),
        &integration_tests::order_body(1).to_string(),
    )
    .await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "Content-Type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_for_user_id() {
    let c = Cluster::start().await;
    let body = json!({ "userId": "one", "items": [{ "productId": "p-1", "quantity": 1, "unitPrice": 1.0 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "userId").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_type_for_quantity() {
    let c = Cluster::start().await;
    let body = json!({ "userId": 1, "items": [{ "productId": "p-1", "quantity": "2", "unitPrice": 1.0 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "quantity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_items() {
    let c = Cluster::start().await;
    let res = post_order(&c, JSON, r#"{"userId": 1}"#).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "items").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unit_price() {
    let c = Cluster::start().await;
    let body = json!({ "userId": 1, "items": [{ "productId": "p-1", "quantity": 1 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "unitPrice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quantity_zero() {
    let c = Cluster::start().await;
    let body =
        json!({ "userId": 1, "items": [{ "productId": "p-1", "quantity": 0, "unitPrice": 1.0 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "items[0].quantity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_quantity_in_second_item() {
    let c = Cluster::start().await;
    let body = json!({ "userId": 1, "items": [
        { "productId": "p-1", "quantity": 1, "unitPrice": 1.0 },
        { "productId": "p-2", "quantity": -3, "unitPrice": 1.0 }
    ] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "items[1].quantity").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_item_list() {
    let c = Cluster::start().await;
    let res = post_order(&c, JSON, r#"{"userId": 1, "items": []}"#).await;
    assert_eq!(res.error(), "invalid_request");
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "items must not be empty").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_unit_price() {
    let c = Cluster::start().await;
    let body =
        json!({ "userId": 1, "items": [{ "productId": "p-1", "quantity": 1, "unitPrice": -5 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "unitPrice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_with_more_than_two_decimals() {
    let c = Cluster::start().await;
    for price in ["0.125", "9.999", "0.001", "1e-3"] {
        let body = format!(
            r#"{{"userId": 1, "items": [{{"productId": "p-1", "quantity": 1, "unitPrice": {price}}}]}}"#
        );
        let res = post_order(&c, JSON, &body).await;
        let message = res.json["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("two decimal places"), "{price}: {message}");
        assert_rejected(&c, res, StatusCode::BAD_REQUEST, "items[0].unitPrice").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_product_id() {
    let c = Cluster::start().await;
    let body =
        json!({ "userId": 1, "items": [{ "productId": " ", "quantity": 1, "unitPrice": 1 }] });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "productId").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_one_mebibyte_is_413() {
    let c = Cluster::start().await;
    let padding = "x".repeat(1024 * 1024);
    let body = json!({ "userId": 1, "items": [], "padding": padding });
    let res = post_order(&c, JSON, &body.to_string()).await;
    assert_eq!(res.error(), "payload_too_large");
    assert_rejected(&c, res, StatusCode::PAYLOAD_TOO_LARGE, "1 MiB").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_idempotency_key() {
    let c = Cluster::start().await;
    let res = Http::default()
        .post_with(
            &format!("{}/orders", c.order.url()),
            &c.gateway(ORDER_SERVICE),
            &[("idempotency-key", "")],
            &integration_tests::order_body(1),
        )
        .await;
    assert_rejected(&c, res, StatusCode::BAD_REQUEST, "Idempotency-Key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_numeric_order_id_in_path() {
    let c = Cluster::start().await;
    let res = Http::default()
        .get(
            &format!("{}/orders/abc", c.order.url()),
            &c.gateway(ORDER_SERVICE),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_numeric_user_id_in_query() {
    let c = Cluster::start().await;
    let res = Http::default()
        .get(
            &format!("{}/orders?userId=abc", c.order.url()),
            &c.gateway(ORDER_SERVICE),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.json["message"].as_str().unwrap().contains("userId"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_pages_out_of_range() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(USER_SERVICE);
    for (query, needle) in [
        // The offset paging is gone; asking for it is refused by name.
        ("page=2", "page"),
        ("page_size=3", "pageSize"),
        ("pageSize=3", "pageSize"),
        ("limit=0", "limit"),
        ("limit=1000", "limit"),
        ("limit=-1", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let res = http
            .get(&format!("{}/users?{query}", c.user.url()), &token)
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            res.json["message"].as_str().unwrap().contains(needle),
            "{query}: {:?}",
            res.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_users_are_refused_and_not_stored() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(USER_SERVICE);
    let url = format!("{}/users", c.user.url());
    for (body, needle) in [
        (json!({ "name": "", "email": "a@b.c" }), "name"),
        (json!({ "name": "A", "email": "not-an-email" }), "email"),
        (json!({ "name": "A", "email": "a@b@c" }), "email"),
        (json!({ "name": "A" }), "email"),
        (json!({ "name": 5, "email": "a@b.c" }), "name"),
    ] {
        let res = http.post(&url, &token, &body).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            res.json["message"].as_str().unwrap().contains(needle),
            "{body}: {:?}",
            res.json
        );
    }
    let page = http.get(&format!("{url}?limit=100"), &token).await;
    assert_eq!(
        page.json["users"].as_array().unwrap().len(),
        3,
        "only the seeded users"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let res = http
        .get(&format!("{}/nowhere", c.order.url()), &token)
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert_eq!(res.error(), "not_found");
    let res = http
        .send(
            Method::DELETE,
            &format!("{}/orders/1", c.order.url()),
            Some(&token),
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.error(), "method_not_allowed");
}
