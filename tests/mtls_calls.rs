//! Calling over mutual TLS (`--tls-dir` on the order service), over real
//! sockets on 127.0.0.1: the order flow end to end with the gateway's
//! certificate, users fetched over REST and over gRPC; both outages as
//! tests/outages.rs has them, with service tokens and with certificates
//! alone (`--service-auth mtls`); and a server presenting another
//! service's certificate where the user service should be, which the order
//! service refuses in the handshake instead of using it.

use integration_tests::Data;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use demo_services::auth::{Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use demo_services::order::{Settings, UserTransport};
use demo_services::server::serve::{self, Limits};
use demo_services::tls::certs::{self, DEFAULT_TRUST_DOMAIN};
use demo_services::tls::server::{TlsListener, server_config};
use http::{Method, StatusCode};
use integration_tests::{
    Answer, Cluster, Http, fast_resilience, order_body, start_notification_with, start_order,
    start_user_with,
};
use tokio::net::TcpListener;
use tower_circuit::breaker::CircuitState;

/// The longest the outbox may take to deliver a backlog here.
const DRAIN: Duration = Duration::from_secs(10);

/// What the services prove themselves with besides their certificates.
#[derive(Debug, Clone, Copy)]
enum Auth {
    /// Service tokens, each bound to the certificate of the connection
    /// it comes on (`--service-auth jwt`, the default).
    Tokens,
    /// Nothing: the certificate alone, with the receiver's per-caller
    /// permissions (`--service-auth mtls`).
    CertificatesAlone,
}

impl Auth {
    async fn cluster(self, transport: UserTransport) -> Cluster {
        match self {
            Auth::Tokens => Cluster::start_mtls(transport, fast_resilience()).await,
            Auth::CertificatesAlone => {
                let keys = Keys::mtls(DEFAULT_TRUST_DOMAIN).expect("an mTLS policy");
                Cluster::start_mtls_keyed(keys, transport, fast_resilience()).await
            }
        }
    }

    /// What the gateway sends to `audience` besides its certificate.
    fn credential(self, c: &Cluster, audience: &str) -> Option<String> {
        match self {
            Auth::Tokens => Some(c.gateway(audience)),
            Auth::CertificatesAlone => None,
        }
    }
}

/// `POST url` with a JSON body and, if given, a bearer token.
async fn post(http: &Http, url: &str, token: Option<&str>, body: &serde_json::Value) -> Answer {
    let json = [("content-type", "application/json")];
    http.send(Method::POST, url, token, &json, body.to_string())
        .await
}

/// `GET url` with, if given, a bearer token.
async fn get(http: &Http, url: &str, token: Option<&str>) -> Answer {
    http.send(Method::GET, url, token, &[], Bytes::new()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_over_mutual_tls_with_users_over_rest() {
    order_flow(Auth::Tokens, UserTransport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_over_mutual_tls_with_users_over_grpc() {
    order_flow(Auth::Tokens, UserTransport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_on_certificates_alone() {
    order_flow(Auth::CertificatesAlone, UserTransport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_runs_on_certificates_alone_with_users_over_grpc() {
    order_flow(Auth::CertificatesAlone, UserTransport::Grpc).await;
}

/// POST /orders with the gateway's certificate (and token, with `Tokens`):
/// 201 with the user fetched live over `transport`, and the notification
/// delivered to the notification service, all three hops over mutual TLS.
async fn order_flow(auth: Auth, transport: UserTransport) {
    let c = auth.cluster(transport).await;
    assert!(c.order.url().starts_with("https://"), "{}", c.order.url());
    assert!(c.settings.user_url.starts_with("https://"));
    let orders = c.http(ORDER_SERVICE);

    let created = post(
        &orders,
        &format!("{}/orders", c.order.url()),
        auth.credential(&c, ORDER_SERVICE).as_deref(),
        &order_body(1),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.json);
    assert_eq!(created.json["user"]["source"], "live");
    assert_eq!(created.json["user"]["name"], "Ada Lovelace");
    let id = created.json["id"].as_i64().unwrap();

    c.drained(DRAIN).await;
    let list = get(
        &c.http(NOTIFICATION_SERVICE),
        &format!("{}/notifications?orderId={id}", c.notification.url()),
        auth.credential(&c, NOTIFICATION_SERVICE).as_deref(),
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.json);
    assert_eq!(
        list.json["notifications"].as_array().unwrap().len(),
        1,
        "{:?}",
        list.json
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_user_service_down_uses_the_cached_user_then_fails_fast_then_recovers() {
    user_service_down(Auth::Tokens, UserTransport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_and_grpc_user_service_down_uses_the_cached_user_then_recovers() {
    user_service_down(Auth::Tokens, UserTransport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_certificates_alone_user_service_down_uses_the_cached_user_then_recovers() {
    user_service_down(Auth::CertificatesAlone, UserTransport::Http).await;
}

/// tests/outages.rs's user-service outage, every hop over mutual TLS.
async fn user_service_down(auth: Auth, transport: UserTransport) {
    let mut c = auth.cluster(transport).await;
    let http = c.http(ORDER_SERVICE);
    let token = auth.credential(&c, ORDER_SERVICE);
    let token = token.as_deref();
    let orders = format!("{}/orders", c.order.url());

    let live = post(&http, &orders, token, &order_body(1)).await;
    assert_eq!(live.status, StatusCode::CREATED, "{:?}", live.json);
    assert_eq!(live.json["user"]["source"], "live");

    let user_addr = c.user.addr;
    let user_tls = c.tls(USER_SERVICE);
    c.user.stop().await.unwrap();

    // A known user: the kept copy.
    let cached = post(&http, &orders, token, &order_body(1)).await;
    assert_eq!(cached.status, StatusCode::CREATED, "{:?}", cached.json);
    assert_eq!(cached.json["user"]["source"], "cache");

    // An unseen user: 503, the breaker open, then refused at once with
    // Retry-After.
    let breaker = c.orders.upstream.users.breaker().clone();
    let unseen = post(&http, &orders, token, &order_body(2)).await;
    assert_eq!(
        unseen.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        unseen.json
    );
    assert_eq!(unseen.error(), "user_service_unavailable");
    assert_eq!(breaker.state(), CircuitState::Open);
    let fast = post(&http, &orders, token, &order_body(2)).await;
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(fast.headers.contains_key("retry-after"));

    // Back over TLS on the same address: once the open duration is over,
    // a probe closes the breaker (as in tests/outages.rs, the wait is the
    // breaker's own remaining time, not a guess).
    c.user = start_user_with(&c.data, &c.keys, Some(user_addr), user_tls)
        .await
        .0;
    tokio::time::sleep(breaker.retry_after().unwrap_or_default()).await;
    let back = post(&http, &orders, token, &order_body(2)).await;
    assert_eq!(back.status, StatusCode::CREATED, "{:?}", back.json);
    assert_eq!(back.json["user"]["source"], "live");
    assert_eq!(back.json["user"]["name"], "Grace Hopper");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_mutual_tls_notification_service_down_orders_succeed_and_notifications_arrive_once() {
    notification_service_down(Auth::Tokens).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_certificates_alone_notification_service_down_orders_succeed_and_arrive_once() {
    notification_service_down(Auth::CertificatesAlone).await;
}

/// tests/outages.rs's notification outage over mutual TLS: orders still
/// 201, and once the service is back every notification arrives once.
async fn notification_service_down(auth: Auth) {
    let mut c = auth.cluster(UserTransport::Http).await;
    let http = c.http(ORDER_SERVICE);
    let token = auth.credential(&c, ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());

    let note_addr = c.notification.addr;
    let note_tls = c.tls(NOTIFICATION_SERVICE);
    c.notification.stop().await.unwrap();
    let mut ids = Vec::new();
    for user in [1, 2, 3, 1] {
        let res = post(&http, &orders, token.as_deref(), &order_body(user)).await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        assert_eq!(res.json["notification"], "queued");
        ids.push(res.json["id"].as_i64().unwrap());
    }
    assert!(c.orders.outbox.pending() >= 1);

    c.notification = start_notification_with(&c.data, &c.keys, Some(note_addr), note_tls)
        .await
        .0;
    c.drained(DRAIN).await;

    let notifications = c.http(NOTIFICATION_SERVICE);
    let reader = auth.credential(&c, NOTIFICATION_SERVICE);
    for id in &ids {
        let list = get(
            &notifications,
            &format!("{}/notifications?orderId={id}", c.notification.url()),
            reader.as_deref(),
        )
        .await;
        assert_eq!(
            list.json["notifications"].as_array().unwrap().len(),
            1,
            "order {id}: {:?}",
            list.json
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_services_certificate_is_never_used_for_users_over_rest() {
    impostor(UserTransport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_services_certificate_is_never_used_for_users_over_grpc() {
    impostor(UserTransport::Grpc).await;
}

/// Where the user service should be, a server with the notification
/// service's certificate (same CA, valid, right address and DNS name):
/// the order service's handshake refuses it, so no request reaches it,
/// and an unseen user is a 503 (the user service counts as unreachable).
async fn impostor(transport: UserTransport) {
    let c = Cluster::start_mtls(transport, fast_resilience()).await;

    // Counts every request it is sent, whatever the path or protocol, and
    // answers REST as a user service would, with a user of its choosing.
    let reached = Arc::new(AtomicUsize::new(0));
    let seen = reached.clone();
    let app = Router::new().fallback(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        async {
            axum::Json(serde_json::json!({
                "id": 1, "name": "Mallory", "email": "mallory@example.com"
            }))
        }
    });
    let config = server_config(&c.tls(NOTIFICATION_SERVICE).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve::serve(
        TlsListener::new(listener, config),
        app,
        Limits::default(),
        std::future::pending(),
    ));

    // A second order service, calling the impostor for users.
    let settings = Settings {
        user_url: format!("https://{addr}"),
        ..c.settings.clone()
    };
    let data = Data::new().await;
    let (order, state) = start_order(&data, &c.keys, &settings, None).await;
    let answer = c
        .http(ORDER_SERVICE)
        .post(
            &format!("{}/orders", order.url()),
            &c.gateway(ORDER_SERVICE),
            &order_body(1),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        answer.json
    );
    assert_eq!(answer.error(), "user_service_unavailable");
    // Why, over either transport: the identity meant and the one found.
    let message = answer.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "expected the server spiffe://demo.local/user-service, \
             it presented spiffe://demo.local/notification-service"
        ),
        "{message}"
    );
    let stats = state.upstream.users.breaker().stats();
    assert!(
        stats.failures >= 1,
        "the call was tried and failed: {stats:?}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "no request reached the impostor"
    );
    order.stop().await.unwrap();
}

/// The order service calls with the certificate it serves with, and a
/// renewal reaches both: its identity reloads (the reload task runs for the
/// order service too), and once its old connections to the user service
/// are gone, the new ones (made with the renewed certificate, the only one
/// it holds) are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_the_one_the_order_service_calls_with() {
    let mut c = Auth::Tokens.cluster(UserTransport::Http).await;
    let http = c.http(ORDER_SERVICE);
    let token = c.gateway(ORDER_SERVICE);
    let orders = format!("{}/orders", c.order.url());
    let first = post(&http, &orders, Some(&token), &order_body(1)).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.json);

    let identity = c.settings.tls.as_ref().unwrap().identity().clone();
    let before = identity.current().serial.clone();
    certs::renew(
        c.certs.as_ref().unwrap().path(),
        None,
        certs::DEFAULT_LEAF_TTL,
        time::OffsetDateTime::now_utc(),
    )
    .expect("renew the leaves");
    // The reload task looks at the files every second.
    tokio::time::timeout(Duration::from_secs(10), async {
        while identity.current().serial == before {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the order service reloads its certificate");
    let health = get(&http, &format!("{}/health", c.order.url()), None).await;
    assert_eq!(
        health.json["tls"]["serial"].as_str(),
        Some(identity.current().serial.as_str()),
        "{:?}",
        health.json
    );

    // A fresh user service on the same address: the order service's pooled
    // connections to the old one are gone, so the next lookup handshakes
    // anew, presenting the renewed certificate.
    let user_addr = c.user.addr;
    let user_tls = c.tls(USER_SERVICE);
    c.user.stop().await.unwrap();
    c.user = start_user_with(&c.data, &c.keys, Some(user_addr), user_tls)
        .await
        .0;
    let unseen = post(&http, &orders, Some(&token), &order_body(2)).await;
    assert_eq!(unseen.status, StatusCode::CREATED, "{:?}", unseen.json);
    assert_eq!(unseen.json["user"]["source"], "live");
}
