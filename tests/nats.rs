//! Notifications through NATS JetStream (`--notify-via nats`) against the
//! real server on loopback (`integration_tests::engines::nats`; skipped
//! without one, failing under CI): each test has a stream, subject and
//! consumer of its own, deleted at the end.

use std::time::Duration;

use async_nats::jetstream;
use demo_services::auth::{NOTIFICATION_SERVICE, ORDER_SERVICE};
use demo_services::order::notify::{Notifier, message_id};
use http::StatusCode;
use integration_tests::nats::{NatsCluster, Relay, jetstream, socket_addr, until};
use integration_tests::{Data, Http, logs, order_body, start_order};
use serde_json::Value;

const WITHIN: Duration = Duration::from_secs(20);

/// Places an order for user 1; its id.
async fn place(c: &NatsCluster) -> i64 {
    let answer = Http::default()
        .post(
            &format!("{}/orders", c.order.url()),
            &c.gateway(ORDER_SERVICE),
            &order_body(1),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    answer.json["id"].as_i64().expect("an order id")
}

/// The notifications the notification service shows for `order`.
async fn notifications_of(c: &NatsCluster, order: i64) -> Vec<Value> {
    let running = c
        .notification
        .as_ref()
        .expect("the notification service runs");
    let answer = Http::default()
        .get(
            &format!("{}/notifications?orderId={order}", running.url()),
            &c.gateway(NOTIFICATION_SERVICE),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    answer.json["notifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the consumer has nothing pending or unacked.
async fn consumer_idle(c: &NatsCluster) {
    let inbox = c.notifications.broker.clone().expect("a NATS consumer");
    assert!(
        until(WITHIN, || {
            let inbox = inbox.clone();
            async move { inbox.lag().await == Some(0) }
        })
        .await,
        "the consumer still lags: {:?}",
        inbox.lag().await
    );
}

/// The stream's message count.
async fn messages_in(js: &jetstream::Context, stream: &str) -> u64 {
    let mut stream = js.get_stream(stream).await.expect("the stream");
    stream.info().await.expect("stream info").state.messages
}

/// `GET url` without a token, as JSON.
async fn health(url: &str) -> Value {
    Http::default()
        .send(http::Method::GET, &format!("{url}/health"), None, &[], "")
        .await
        .json
}

async fn metrics(url: &str) -> String {
    let answer = Http::default()
        .send(http::Method::GET, &format!("{url}/metrics"), None, &[], "")
        .await;
    String::from_utf8_lossy(&answer.raw).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_placed_while_the_notification_service_is_down_are_delivered_once_after_it_returns()
{
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    let mut c = NatsCluster::start(&url, None).await;
    c.stop_notification().await;

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(place(&c).await);
    }
    // Delivered means on the stream: the outbox drains with no consumer.
    c.drained(WITHIN).await;
    let js = jetstream(&url).await;
    assert_eq!(messages_in(&js, &c.names.config.stream).await, 5);
    assert_eq!(c.notifications.store.count().await.unwrap(), 0);

    c.restart_notification().await;
    c.stored(5, WITHIN).await;
    consumer_idle(&c).await;
    for id in ids {
        let shown = notifications_of(&c, id).await;
        assert_eq!(shown.len(), 1, "order {id}: {shown:?}");
        assert_eq!(shown[0]["userId"], 1);
    }
    assert_eq!(c.notifications.store.count().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_and_regained_loses_nothing() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    // The order service reaches NATS through a relay the test cuts.
    let relay = Relay::start(socket_addr(&url), true).await;
    let c = NatsCluster::start(&url, Some(&relay.url())).await;
    place(&c).await;
    c.stored(1, WITHIN).await;

    relay.cut();
    let order_url = c.order.url();
    assert!(
        until(WITHIN, || {
            let url = order_url.clone();
            async move { health(&url).await["broker"]["connection"] != "connected" }
        })
        .await,
        "the order service still says it is connected"
    );
    for _ in 0..3 {
        place(&c).await;
    }
    // Long enough for deliveries to fail and the client to try (and fail)
    // to reconnect more than once.
    assert!(
        until(WITHIN, || {
            let url = order_url.clone();
            async move {
                metrics(&url)
                    .await
                    .contains("outbox_deliveries_total{result=\"failed\"}")
            }
        })
        .await,
        "no delivery failed while the connection was cut"
    );
    assert!(
        c.orders.outbox.pending() > 0,
        "delivered without a connection"
    );

    relay.restore();
    c.drained(WITHIN).await;
    c.stored(4, WITHIN).await;
    consumer_idle(&c).await;
    for id in 1..=4 {
        assert_eq!(notifications_of(&c, id).await.len(), 1, "order {id}");
    }
    assert_eq!(
        health(&order_url).await["broker"]["connection"],
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_created_again_and_nothing_is_lost() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    let mut c = NatsCluster::start(&url, None).await;
    place(&c).await;
    c.stored(1, WITHIN).await;
    let js = jetstream(&url).await;

    // Under both services: the consumer's pulls fail and it sets itself
    // up again (the stream too, if the publisher has not yet).
    js.delete_stream(&c.names.config.stream)
        .await
        .expect("delete the stream");
    place(&c).await;
    c.drained(WITHIN).await;
    c.stored(2, WITHIN).await;

    // With the notification service stopped: the publisher finds no
    // stream and creates it again itself.
    c.stop_notification().await;
    js.delete_stream(&c.names.config.stream)
        .await
        .expect("delete the stream");
    place(&c).await;
    c.drained(WITHIN).await;
    assert_eq!(messages_in(&js, &c.names.config.stream).await, 1);
    c.restart_notification().await;
    c.stored(3, WITHIN).await;
    for id in 1..=3 {
        assert_eq!(notifications_of(&c, id).await.len(), 1, "order {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_sent_again_is_dropped_by_the_stream_and_stored_once() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    let c = NatsCluster::start(&url, None).await;
    let id = place(&c).await;
    c.drained(WITHIN).await;
    c.stored(1, WITHIN).await;
    let sent = notifications_of(&c, id).await.remove(0);

    // The outbox sending the record again (its ack lost, say): the same
    // body under the same message id.
    let nats = c.orders.broker.clone().expect("a NATS publisher");
    let deployment = c.orders.store.deployment_id().to_owned();
    let body = serde_json::json!({
        "userId": 1, "orderId": id, "channel": sent["channel"], "message": sent["message"],
    });
    let again = nats
        .publish(
            &message_id(&deployment, id),
            serde_json::to_vec(&body).unwrap().into(),
        )
        .await
        .expect("published");
    assert!(again.duplicate, "the stream took the replay: {again:?}");
    Notifier::Nats(Box::new(nats))
        .send(&deployment, id, &body)
        .await
        .expect("a duplicate ack is a delivery");

    let js = jetstream(&url).await;
    assert_eq!(messages_in(&js, &c.names.config.stream).await, 1);
    consumer_idle(&c).await;
    assert_eq!(c.notifications.store.count().await.unwrap(), 1);
    assert!(
        metrics(&c.order.url())
            .await
            .contains("nats_publish_total{result=\"duplicate\"} 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_with_the_same_order_ids_are_both_delivered() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    let c = NatsCluster::start(&url, None).await;
    // A second order database on the same stream: its order ids start at
    // 1 too.
    let other_data = Data::new().await;
    let (other, other_state) = start_order(&other_data, &c.keys, &c.settings, None).await;
    let (a, b) = (
        c.orders.store.deployment_id().to_owned(),
        other_state.store.deployment_id().to_owned(),
    );
    assert_ne!(a, b);

    assert_eq!(place(&c).await, 1);
    let answer = Http::default()
        .post(
            &format!("{}/orders", other.url()),
            &c.gateway(ORDER_SERVICE),
            &order_body(1),
        )
        .await;
    assert_eq!(answer.json["id"], 1);
    c.drained(WITHIN).await;
    let mut pending = other_state.outbox.watch_pending();
    tokio::time::timeout(WITHIN, pending.wait_for(|n| *n == 0))
        .await
        .expect("the second outbox drains")
        .unwrap();

    // Both on the stream, under ids that differ by deployment.
    let js = jetstream(&url).await;
    assert_eq!(messages_in(&js, &c.names.config.stream).await, 2);
    let stream = js.get_stream(&c.names.config.stream).await.unwrap();
    let mut ids = Vec::new();
    for seq in 1..=2 {
        let message = stream.get_raw_message(seq).await.expect("a message");
        assert_eq!(message.subject.as_str(), c.names.config.subject);
        let id = message.headers.get("Nats-Msg-Id").expect("Nats-Msg-Id");
        ids.push(id.as_str().to_owned());
    }
    ids.sort();
    let mut want = vec![message_id(&a, 1), message_id(&b, 1)];
    want.sort();
    assert_eq!(ids, want);
    // And both consumed and acked (the notification service keeps one
    // notification per order id, so it shows one: the second is the same
    // text for the same user, a duplicate).
    consumer_idle(&c).await;
    let text = metrics(&c.notification.as_ref().unwrap().url()).await;
    assert!(
        text.contains("nats_consumed_total{result=\"new\"} 1")
            && text.contains("nats_consumed_total{result=\"duplicate\"} 1"),
        "{text}"
    );
    other.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_unreachable_orders_are_created_and_stay_pending_until_it_returns() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    // Down from the start: the order service has never reached NATS.
    let relay = Relay::start(socket_addr(&url), false).await;
    let c = NatsCluster::start(&url, Some(&relay.url())).await;
    for _ in 0..4 {
        place(&c).await;
    }
    let order_url = c.order.url();
    assert!(
        until(WITHIN, || {
            let url = order_url.clone();
            async move { health(&url).await["dependencies"]["nats"]["circuit"] == "open" }
        })
        .await,
        "the nats breaker never opened: {}",
        health(&order_url).await
    );
    let body = health(&order_url).await;
    assert_eq!(body["outbox"]["pending"], 4, "{body}");
    assert_eq!(body["broker"]["connection"], "pending", "{body}");
    assert_eq!(body["broker"]["stream"], c.names.config.stream.as_str());
    assert_eq!(body["broker"]["subject"], c.names.config.subject.as_str());
    let text = metrics(&order_url).await;
    for line in [
        "nats_connected 0",
        "circuit_breaker_state{breaker=\"nats\",state=\"open\"} 1",
        "outbox_pending_notifications 4",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(text.contains("nats_publish_total{result=\"failed\"}"));
    let answer = Http::default()
        .get(&format!("{order_url}/orders/1"), &c.gateway(ORDER_SERVICE))
        .await;
    assert_eq!(answer.json["notification"], "queued", "{}", answer.json);

    relay.restore();
    c.drained(WITHIN).await;
    c.stored(4, WITHIN).await;
    let notification_url = c.notification.as_ref().unwrap().url();
    let body = health(&notification_url).await;
    assert_eq!(body["broker"]["connection"], "connected", "{body}");
    assert_eq!(body["broker"]["consumer"], c.names.config.consumer.as_str());
    assert!(body["broker"]["lag"].is_u64(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_is_terminated_and_logged_escaped() {
    let Some(url) = integration_tests::engines::nats() else {
        return;
    };
    logs::capture();
    let c = NatsCluster::start(&url, None).await;
    let js = jetstream(&url).await;
    // Make sure the stream exists before publishing around the services.
    place(&c).await;
    c.stored(1, WITHIN).await;

    let marker = format!("malformed-{}", std::process::id());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("X-Request-Id", marker.as_str());
    js.publish_with_headers(
        c.names.config.subject.clone(),
        headers,
        "not json\nINFO forged line \u{1b}[31m".into(),
    )
    .await
    .unwrap()
    .await
    .expect("acked by the stream");
    consumer_idle(&c).await;

    let lines = logs::lines_with(&marker);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("malformed notification message"));
    assert!(
        lines[0].contains("not json\\nINFO forged line \\u{1b}[31m"),
        "{}",
        lines[0]
    );
    assert!(
        logs::lines_with("INFO forged line")
            .iter()
            .all(|l| l.contains(&marker))
    );
    let text = metrics(&c.notification.as_ref().unwrap().url()).await;
    assert!(
        text.contains("nats_consumed_total{result=\"malformed\"} 1"),
        "{text}"
    );
    // Terminated, not given out again; the store is untouched and the next
    // order goes through.
    assert_eq!(c.notifications.store.count().await.unwrap(), 1);
    place(&c).await;
    c.stored(2, WITHIN).await;
}
