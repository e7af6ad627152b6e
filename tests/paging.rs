//! Every list pages: `limit` (default 50, at most 100) and an opaque
//! `cursor`, with `nextCursor` beside the items.

use std::collections::BTreeSet;
use std::time::Duration;

use demo_services::auth::{NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use http::StatusCode;
use integration_tests::{Cluster, Http, order_body};
use serde_json::{Value, json};

/// Walks a list from the start with the default limit; returns the ids
/// and the size of each page.
async fn walk(http: &Http, url: &str, token: &str, field: &str) -> (Vec<i64>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_url = match &cursor {
            Some(c) => format!("{url}&cursor={c}"),
            None => url.to_owned(),
        };
        let res = http.get(&page_url, token).await;
        assert_eq!(res.status, StatusCode::OK, "{page_url}: {:?}", res.json);
        let items = res.json[field].as_array().unwrap();
        sizes.push(items.len());
        ids.extend(items.iter().map(|i| i["id"].as_i64().unwrap()));
        match &res.json["nextCursor"] {
            Value::Null => break,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("nextCursor {other:?}"),
        }
        assert!(sizes.len() <= 10, "the walk ends");
    }
    (ids, sizes)
}

/// The ids are every expected one, once, in order.
fn assert_whole(ids: &[i64], expected: usize) {
    assert_eq!(ids.len(), expected, "{ids:?}");
    let unique: BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), expected, "no duplicates");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
}

/// Bad `limit`s and `cursor`s on `url` (which has a `?`): JSON 400s.
async fn assert_bad_paging(http: &Http, url: &str, token: &str) {
    for (query, needle) in [
        ("limit=101", "limit"),
        ("limit=1000", "limit"),
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=", "limit"),
        ("cursor=abc", "cursor"),
        ("cursor=-5", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=99999999999999999999999", "cursor"),
    ] {
        let res = http.get(&format!("{url}&{query}"), token).await;
        assert_eq!(
            res.status,
            StatusCode::BAD_REQUEST,
            "{query}: {:?}",
            res.raw
        );
        assert_eq!(res.error(), "invalid_request", "{query}");
        let message = res.json["message"].as_str().unwrap();
        assert!(message.contains(needle), "{query}: {message}");
    }
    let full = http.get(&format!("{url}&limit=100"), token).await;
    assert_eq!(full.status, StatusCode::OK);
}

async fn orders_and_notifications_page_by_fifty_with_a_cursor() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    for _ in 0..120 {
        let res = http.post(&orders, &token, &order_body(1)).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    // Another user's order, which no page of user 1 shows.
    http.post(&orders, &token, &order_body(2)).await;

    let (ids, sizes) = walk(&http, &format!("{orders}?userId=1"), &token, "orders").await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_whole(&ids, 120);
    let small = http
        .get(&format!("{orders}?userId=1&limit=7"), &token)
        .await;
    assert_eq!(small.json["orders"].as_array().unwrap().len(), 7);
    assert_eq!(small.json["nextCursor"], json!(ids[6].to_string()));
    let none = http.get(&format!("{orders}?userId=3"), &token).await;
    assert_eq!(none.json, json!({ "orders": [], "nextCursor": null }));
    assert_bad_paging(&http, &format!("{orders}?userId=1"), &token).await;

    c.drained(Duration::from_secs(30)).await;
    let reader = c.gateway(NOTIFICATION_SERVICE);
    let notes = format!("{}/notifications", c.notification.url());
    let (ids, sizes) = walk(
        &http,
        &format!("{notes}?userId=1"),
        &reader,
        "notifications",
    )
    .await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_whole(&ids, 120);
    let one = http.get(&format!("{notes}?orderId=121"), &reader).await;
    assert_eq!(one.json["notifications"].as_array().unwrap().len(), 1);
    assert_eq!(one.json["nextCursor"], Value::Null);
    assert_bad_paging(&http, &format!("{notes}?userId=1"), &reader).await;
}

async fn users_page_by_fifty_with_a_cursor() {
    let c = Cluster::start().await;
    let http = Http::default();
    let token = c.gateway(USER_SERVICE);
    let users = format!("{}/users", c.user.url());
    // Three seeded, 117 more.
    for i in 0..117 {
        let res = http
            .post(
                &users,
                &token,
                &json!({ "name": format!("User {i}"), "email": format!("u{i}@example.com") }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    // `?` and an ignored parameter, so the helpers can append `&...`.
    let url = format!("{users}?_=");
    let (ids, sizes) = walk(&http, &url, &token, "users").await;
    assert_eq!(sizes, [50, 50, 20]);
    assert_whole(&ids, 120);
    assert_bad_paging(&http, &url, &token).await;

    // One paging scheme: the older offset paging is refused, not ignored.
    for old in ["page=2&page_size=3", "page=2&limit=3", "pageSize=3"] {
        let res = http.get(&format!("{users}?{old}"), &token).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{old}");
        assert_eq!(res.error(), "invalid_request", "{old}");
    }
}

integration_tests::on_both_backends!(
    orders_and_notifications_page_by_fifty_with_a_cursor,
    users_page_by_fifty_with_a_cursor,
);
