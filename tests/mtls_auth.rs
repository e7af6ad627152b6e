//! Authentication under mutual TLS, over real sockets on 127.0.0.1: a
//! token or an API key is accepted only from the service the client
//! certificate names, and with `--service-auth mtls` the certificate alone
//! authenticates, with the receiver's permissions.

use integration_tests::Data;
use std::time::Duration;

use demo_services::auth::{API_GATEWAY, ApiKeyRing, Keys, ORDER_SERVICE, USER_SERVICE};
use demo_services::fault::Faults;
use demo_services::harness::{self};
use demo_services::tls::certs;
use demo_services::user;
use http::{Method, StatusCode};
use integration_tests::tls::{certs_dir, user_over_tls};
use integration_tests::tls::{client_config, send};

fn token(keys: &Keys, issuer: &str) -> String {
    let token = keys
        .token(issuer, USER_SERVICE, None, Duration::from_secs(60))
        .expect("sign");
    format!("Bearer {token}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_issuer_is_not_the_certificates_service_is_401() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::ephemeral();
    let (user, state) = user_over_tls(dir.path(), &data, &keys).await;
    let gateway = client_config(dir.path(), API_GATEWAY);

    // order-service's valid token, over the gateway's connection.
    let stolen = token(&keys, ORDER_SERVICE);
    let res = send(
        user.addr,
        gateway.clone(),
        Method::GET,
        "/users/1",
        &[("authorization", &stolen)],
        "",
    )
    .await
    .expect("an answer");
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.body);
    assert_eq!(res.json["error"], "peer_mismatch");
    let stats = state.server.auth.jwt().expect("jwt mode").stats();
    assert_eq!(stats.rejected, [("peer_mismatch", 1)]);

    // The gateway's own token over its own connection, and order-service's
    // over order-service's.
    let own = token(&keys, API_GATEWAY);
    let res = send(
        user.addr,
        gateway,
        Method::GET,
        "/users/1",
        &[("authorization", &own)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.json["id"], 1);
    let res = send(
        user.addr,
        client_config(dir.path(), ORDER_SERVICE),
        Method::GET,
        "/users/1",
        &[("authorization", &stolen)],
        "",
    )
    .await
    .unwrap();
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    user.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_of_another_service_than_the_certificates_is_401() {
    let dir = certs_dir();
    let data = Data::new().await;
    let ring = ApiKeyRing::ephemeral();
    let (_, order_key) = ring.newest(ORDER_SERVICE).unwrap();
    let order_key = order_key.to_owned();
    let (user, _) = user_over_tls(dir.path(), &data, &Keys::api_keys(ring)).await;
    let headers = [("x-service-name", ORDER_SERVICE), ("x-api-key", &order_key)];

    let over_gateway = send(
        user.addr,
        client_config(dir.path(), API_GATEWAY),
        Method::GET,
        "/users/1",
        &headers,
        "",
    )
    .await
    .unwrap();
    assert_eq!(over_gateway.status, StatusCode::UNAUTHORIZED);
    assert_eq!(over_gateway.json["error"], "peer_mismatch");
    let over_own = send(
        user.addr,
        client_config(dir.path(), ORDER_SERVICE),
        Method::GET,
        "/users/1",
        &headers,
        "",
    )
    .await
    .unwrap();
    assert_eq!(over_own.status, StatusCode::OK, "{}", over_own.body);
    user.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mtls_mode_the_certificate_alone_authenticates_with_the_receivers_permissions() {
    let dir = certs_dir();
    let data = Data::new().await;
    let keys = Keys::mtls(&certs::trust_domain(dir.path()).unwrap()).unwrap();
    let (user, state) = user_over_tls(dir.path(), &data, &keys).await;

    // The gateway reads users with no token at all.
    let read = send(
        user.addr,
        client_config(dir.path(), API_GATEWAY),
        Method::GET,
        "/users/1",
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.json["name"], "Ada Lovelace");

    // order-service is granted read:users, not write:users.
    let new_user = r#"{"name": "Mallory", "email": "m@example.com"}"#;
    let write = send(
        user.addr,
        client_config(dir.path(), ORDER_SERVICE),
        Method::POST,
        "/users",
        &[("content-type", "application/json")],
        new_user,
    )
    .await
    .unwrap();
    assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.body);
    assert_eq!(write.json["error"], "insufficient_scope");
    // The gateway, granted write:users, may.
    let write = send(
        user.addr,
        client_config(dir.path(), API_GATEWAY),
        Method::POST,
        "/users",
        &[("content-type", "application/json")],
        new_user,
    )
    .await
    .unwrap();
    assert_eq!(write.status, StatusCode::CREATED, "{}", write.body);

    let stats = state.server.auth.mtls().expect("mtls mode").stats();
    assert_eq!(stats.authenticated(), 3);
    user.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_mtls_mode_a_request_without_a_client_certificate_is_401() {
    // Served in plaintext: no connection carries an identity.
    let data = Data::new().await;
    let keys = Keys::mtls("demo.local").unwrap();
    let state = user::State::open(&data.database(), &keys, Faults::default())
        .await
        .unwrap();
    let user = harness::start(state, None).await.unwrap();
    let http = integration_tests::Http::default();
    let res = http
        .send(
            Method::GET,
            &format!("{}/users/1", user.url()),
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.error(), "missing_client_certificate");
    // Naming a caller in a header proves nothing either.
    let res = http
        .send(
            Method::GET,
            &format!("{}/users/1", user.url()),
            None,
            &[("x-service-name", API_GATEWAY)],
            "",
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let health = http
        .send(
            Method::GET,
            &format!("{}/health", user.url()),
            None,
            &[],
            "",
        )
        .await;
    assert_eq!(health.status, StatusCode::OK, "health stays public");
    user.stop().await.unwrap();
}
