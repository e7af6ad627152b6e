//! Round trips over real sockets: an axum server verifying tokens (or API
//! keys) on 127.0.0.1:0, called through a hyper-util client with the
//! signing (or API-key) layer.

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
use tower_jwt_service_auth::api_key::{ApiKeyClientLayer, ApiKeyIdentity, ApiKeyLayer, ApiKeys};
use tower_jwt_service_auth::jwt::client::SignTokenLayer;
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};

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

// === API-key rotation ===

const ORDER_API_KEY_V1: &str = "order-v1-9f3Kq2LmX7vB4tR8";
const ORDER_API_KEY_V2: &str = "order-v2-Hc6Wn1Pz5sJd0yQe";

/// The notification service, accepting `keys`: `POST /notifications`
/// answers with the caller and the key version that matched.
///
/// `ApiKeyLayer` holds its keys as given, with no way to change them
/// while it serves, so each step of a rotation is a new server, as a
/// restart with the new configuration would be.
async fn serve_notifications(keys: ApiKeys) -> String {
    async fn notify(Extension(caller): Extension<ApiKeyIdentity>) -> String {
        format!("{} {}", caller.service, caller.key_version)
    }
    let app = Router::new()
        .route("/notifications", post(notify))
        .layer(ApiKeyLayer::new(keys));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/notifications")
}

/// What the server answered: status, `WWW-Authenticate` (empty if none),
/// body.
type Answer = (StatusCode, String, String);

/// Calls `url` as order-service with `key`, through the API-key client
/// layer over hyper-util.
async fn call_with_key(key: &str, url: &str) -> Answer {
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let client = ApiKeyClientLayer::new("order-service", key)
        .unwrap()
        .layer(http);
    let req = Request::post(url).body(Full::default()).unwrap();
    let res = client.oneshot(req).await.unwrap();
    let status = res.status();
    let www = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, www, String::from_utf8(body.to_vec()).unwrap())
}

fn accepted(version: &str) -> Answer {
    (
        StatusCode::OK,
        String::new(),
        format!("order-service {version}"),
    )
}

/// The documented answer to a key that matches no active version.
fn invalid_api_key() -> Answer {
    (
        StatusCode::UNAUTHORIZED,
        r#"ApiKey error="invalid_api_key""#.to_owned(),
        r#"{"error":"invalid_api_key","message":"the API key is not valid for the service named in x-service-name"}"#
            .to_owned(),
    )
}

#[tokio::test]
async fn an_api_key_rotation_over_the_wire_never_fails_a_current_key() {
    // Before: only v1, which works; v2 is not accepted yet.
    let mut keys = ApiKeys::new().with_key("order-service", "v1", ORDER_API_KEY_V1);
    let before = serve_notifications(keys.clone()).await;
    assert_eq!(
        call_with_key(ORDER_API_KEY_V1, &before).await,
        accepted("v1")
    );
    assert_eq!(
        call_with_key(ORDER_API_KEY_V2, &before).await,
        invalid_api_key()
    );

    // The server adds v2: both keys work, each reported by its version.
    keys = keys.with_key("order-service", "v2", ORDER_API_KEY_V2);
    let during = serve_notifications(keys.clone()).await;
    assert_eq!(
        call_with_key(ORDER_API_KEY_V1, &during).await,
        accepted("v1")
    );
    assert_eq!(
        call_with_key(ORDER_API_KEY_V2, &during).await,
        accepted("v2")
    );

    // The server removes v1: the old key is refused, the new one works.
    assert!(keys.remove("order-service", "v1"));
    let after = serve_notifications(keys).await;
    assert_eq!(
        call_with_key(ORDER_API_KEY_V1, &after).await,
        invalid_api_key()
    );
    assert_eq!(
        call_with_key(ORDER_API_KEY_V2, &after).await,
        accepted("v2")
    );
}

// === the ServiceIdentity extractor (feature `axum`) ===

#[cfg(feature = "axum")]
mod extractor {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A server whose handler takes `ServiceIdentity` as an extractor,
    /// behind `VerifyLayer` or not.
    async fn serve_whoami(verify: Option<VerifyLayer>) -> String {
        async fn whoami(caller: ServiceIdentity) -> String {
            format!("{} {:?}", caller.service, caller.permissions)
        }
        let mut app = Router::new().route("/whoami", get(whoami));
        if let Some(verify) = verify {
            app = app.layer(verify);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/whoami")
    }

    #[tokio::test]
    async fn the_extractor_hands_the_handler_the_callers_identity() {
        let verify = VerifyLayer::new(Verifier::new("user-service", order_keys()));
        let url = serve_whoami(Some(verify)).await;
        let (status, body) = call(
            order_signer("order-1", ORDER_KEY),
            "user-service",
            "GET",
            url,
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"order-service ["read:users"]"#)
        );
    }

    #[tokio::test]
    async fn the_extractor_behind_verify_layer_still_refuses_a_missing_token() {
        let verify = VerifyLayer::new(Verifier::new("user-service", order_keys()));
        let url = serve_whoami(Some(verify)).await;
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res = http
            .oneshot(Request::get(url).body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
    }

    #[tokio::test]
    async fn the_extractor_without_verify_layer_is_a_logged_500() {
        let errors = Errors::default();
        // Scoped to this thread: the test's current-thread runtime runs
        // the server and the client here too.
        let _guard = tracing::subscriber::set_default(errors.clone());
        let url = serve_whoami(None).await;
        let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let res = http
            .oneshot(Request::get(url).body(Full::default()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()["content-type"], "application/json");
        assert!(!res.headers().contains_key("www-authenticate"));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            body,
            r#"{"error":"internal","message":"ServiceIdentity extractor used on a route without VerifyLayer"}"#
        );
        assert_eq!(
            errors.0.lock().unwrap().as_slice(),
            [
                "ServiceIdentity extractor used on a route without VerifyLayer method=GET path=/whoami"
            ]
        );
    }

    /// Records ERROR events as `message field=value ...`.
    #[derive(Clone, Default)]
    struct Errors(Arc<Mutex<Vec<String>>>);

    impl tracing::Subscriber for Errors {
        fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
            *meta.level() == tracing::Level::ERROR
        }

        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }

        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

        fn event(&self, event: &tracing::Event<'_>) {
            let mut line = Line::default();
            event.record(&mut line);
            self.0
                .lock()
                .unwrap()
                .push(format!("{}{}", line.message, line.fields));
        }

        fn enter(&self, _: &tracing::span::Id) {}

        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[derive(Default)]
    struct Line {
        message: String,
        fields: String,
    }

    impl tracing::field::Visit for Line {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            } else {
                self.fields += &format!(" {}={value:?}", field.name());
            }
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.fields += &format!(" {}={value}", field.name());
        }
    }
}
