//! Round trips over real sockets: an axum server verifying tokens on
//! 127.0.0.1:0, called through a hyper-util client with the signing layer.

use std::time::Duration;

use axum::Router;
use axum::extract::Extension;
use axum::routing::{get, post};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Layer, ServiceExt};
use tower_jwt_service_auth::client::SignTokenLayer;
use tower_jwt_service_auth::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::sign::Signer;
use tower_jwt_service_auth::verify::{ServiceIdentity, Verifier};

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");
const ORDER_KEY_2: &[u8] = include_bytes!("keys/order-service-2.key.pem");
const ORDER_PUB_2: &[u8] = include_bytes!("keys/order-service-2.pub.pem");

/// The user service: `GET /users/7` needs `read:users`, `POST /users`
/// needs `write:users`; both answer with the caller's name.
async fn serve_users(keys: KeySet) -> String {
    async fn whoami(Extension(caller): Extension<ServiceIdentity>) -> String {
        caller.service
    }
    let app = Router::new()
        .route(
            "/users/7",
            get(whoami).route_layer(RequirePermissionLayer::new("read:users")),
        )
        .route(
            "/users",
            post(whoami).route_layer(RequirePermissionLayer::new("write:users")),
        )
        .layer(VerifyLayer::new(Verifier::new("user-service", keys)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn order_keys() -> KeySet {
    KeySet::new().with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap())
}

async fn call(signer: Signer, audience: &str, method: &str, url: String) -> (StatusCode, String) {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = SignTokenLayer::new(signer, audience).layer(http);
    let req = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::default())
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn order_signer(kid: &str, pem: &[u8]) -> Signer {
    Signer::new("order-service", SigningKey::ed25519_pem(kid, pem).unwrap())
        .permissions(["read:users"])
        .ttl(Duration::from_secs(300))
}

#[tokio::test]
async fn a_signed_call_reaches_the_handler_with_the_callers_identity() {
    let url = serve_users(order_keys()).await;
    let (status, body) = call(
        order_signer("order-1", ORDER_KEY),
        "user-service",
        "GET",
        format!("{url}/users/7"),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "order-service"));
}

#[tokio::test]
async fn a_token_for_another_target_is_refused_over_the_wire() {
    let url = serve_users(order_keys()).await;
    let (status, body) = call(
        order_signer("order-1", ORDER_KEY),
        "notification-service",
        "GET",
        format!("{url}/users/7"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("not meant for this service"), "{body}");
}

#[tokio::test]
async fn a_missing_permission_is_403_over_the_wire() {
    let url = serve_users(order_keys()).await;
    let (status, body) = call(
        order_signer("order-1", ORDER_KEY),
        "user-service",
        "POST",
        format!("{url}/users"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("insufficient_scope"), "{body}");
}

#[tokio::test]
async fn both_keys_work_during_a_rotation() {
    let keys = order_keys()
        .with(VerifyingKey::ed25519_pem("order-2", "order-service", ORDER_PUB_2).unwrap());
    let url = serve_users(keys).await;
    let old = call(
        order_signer("order-1", ORDER_KEY),
        "user-service",
        "GET",
        format!("{url}/users/7"),
    )
    .await;
    let new = call(
        order_signer("order-2", ORDER_KEY_2),
        "user-service",
        "GET",
        format!("{url}/users/7"),
    )
    .await;
    assert_eq!(old.0, StatusCode::OK);
    assert_eq!(new.0, StatusCode::OK);
}

#[tokio::test]
async fn a_key_the_server_has_dropped_is_refused() {
    let url = serve_users(order_keys()).await;
    let (status, body) = call(
        order_signer("order-2", ORDER_KEY_2),
        "user-service",
        "GET",
        format!("{url}/users/7"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("key id is unknown"), "{body}");
}
