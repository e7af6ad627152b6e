//! gRPC callers are refused the gRPC way by every server layer: HTTP 200,
//! `content-type: application/grpc`, `grpc-status` and the JSON body's
//! message in `grpc-message`, and no body; the handler never runs. The
//! JWT attack list runs as gRPC calls in `http_attacks.rs`; here are the
//! other refusals: the permission layer on its own, an issuer without a
//! grant, every API-key refusal, and the axum extractor's setup error.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tower::util::BoxCloneService;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::api_key::{ApiKeyLayer, ApiKeys, MAX_HEADER_BYTES, Rejection};
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::Verifier;

const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");
const USER_KEY: &[u8] = include_bytes!("keys/user-service.key.pem");
const USER_PUB: &[u8] = include_bytes!("keys/user-service.pub.pem");

const ORDER_KEY_V1: &str = "order-v1-9f3Kq2LmX7vB4tR8";

/// A request with `headers`, as a gRPC call when `grpc`.
fn request(grpc: bool, headers: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::post("/user.UserService/GetUser");
    if grpc {
        req = req
            .header(CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(String::new()).unwrap()
}

/// A handler that counts its calls.
fn handler(
    calls: &Arc<AtomicUsize>,
) -> BoxCloneService<Request<String>, Response<String>, Infallible> {
    let calls = calls.clone();
    BoxCloneService::new(service_fn(move |_req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new("handled".to_owned())) }
    }))
}

/// `grpc-message` decoded: `%XX` to the byte, then UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Asserts that `grpc` is the trailers-only twin of the JSON refusal
/// `rest`: 200, `application/grpc`, `grpc-status: code`, the JSON body's
/// message, and no body.
fn assert_grpc_twin(rest: &Response<String>, grpc: &Response<String>, code: &str) {
    assert!(rest.status().is_client_error() || rest.status().is_server_error());
    assert_eq!(rest.headers()[CONTENT_TYPE], "application/json");
    let json: Value = serde_json::from_str(rest.body()).unwrap();
    let message = json["message"].as_str().unwrap();

    assert_eq!(grpc.status(), StatusCode::OK);
    assert_eq!(grpc.headers()[CONTENT_TYPE], "application/grpc");
    assert_eq!(grpc.headers()["grpc-status"], code);
    let sent = grpc.headers()["grpc-message"].to_str().unwrap();
    assert_eq!(percent_decode(sent), message);
    assert!(grpc.body().is_empty(), "a trailers-only answer has no body");
}

// === JWT ===

#[tokio::test]
async fn the_permission_layer_alone_answers_grpc_unauthenticated() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequirePermissionLayer::new("read:users").layer(handler(&calls));
    let rest = svc.clone().oneshot(request(false, &[])).await.unwrap();
    let grpc = svc.oneshot(request(true, &[])).await.unwrap();
    assert_eq!(rest.status(), StatusCode::UNAUTHORIZED);
    assert_grpc_twin(&rest, &grpc, "16");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_issuer_without_a_grant_is_grpc_permission_denied() {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap())
        .with(VerifyingKey::ed25519_pem("user-1", "user-service", USER_PUB).unwrap());
    let verify = VerifyLayer::new(
        Verifier::new("user-service", keys).grant("order-service", ["read:users"]),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ServiceBuilder::new()
        .layer(verify.clone())
        .layer(RequirePermissionLayer::new("read:users"))
        .service(handler(&calls));
    // user-service has a trusted key but no row in the policy.
    let token = Signer::new(
        "user-service",
        SigningKey::ed25519_pem("user-1", USER_KEY).unwrap(),
    )
    .permissions(["read:users"])
    .sign("user-service")
    .unwrap()
    .token;
    let bearer = format!("Bearer {token}");
    let auth = [(AUTHORIZATION.as_str(), bearer.as_str())];
    let rest = svc.clone().oneshot(request(false, &auth)).await.unwrap();
    let grpc = svc.oneshot(request(true, &auth)).await.unwrap();
    assert_eq!(rest.status(), StatusCode::FORBIDDEN);
    assert_grpc_twin(&rest, &grpc, "7");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(verify.stats().rejected, [("issuer_not_granted", 2)]);
}

// === API keys ===

#[tokio::test]
async fn every_api_key_refusal_is_grpc_unauthenticated() {
    let long = "k".repeat(MAX_HEADER_BYTES + 1);
    let cases: [(Rejection, Vec<(&str, &str)>); 7] = [
        (
            Rejection::MissingKey,
            vec![("x-service-name", "order-service")],
        ),
        (
            Rejection::MissingServiceName,
            vec![("x-api-key", ORDER_KEY_V1)],
        ),
        (
            Rejection::SeveralHeaders,
            vec![
                ("x-service-name", "order-service"),
                ("x-api-key", ORDER_KEY_V1),
                ("x-api-key", ORDER_KEY_V1),
            ],
        ),
        (
            Rejection::TooLarge,
            vec![("x-service-name", "order-service"), ("x-api-key", &long)],
        ),
        (
            Rejection::Malformed,
            vec![("x-service-name", "order-service"), ("x-api-key", "a key")],
        ),
        (
            Rejection::UnknownService,
            vec![
                ("x-service-name", "billing-service"),
                ("x-api-key", ORDER_KEY_V1),
            ],
        ),
        (
            Rejection::WrongKey,
            vec![
                ("x-service-name", "order-service"),
                ("x-api-key", "not-the-key"),
            ],
        ),
    ];
    for (reason, headers) in cases {
        let layer = ApiKeyLayer::new(ApiKeys::new().with_key("order-service", "v1", ORDER_KEY_V1));
        let stats = layer.stats();
        let calls = Arc::new(AtomicUsize::new(0));
        let svc = layer.layer(handler(&calls));
        let rest = svc.clone().oneshot(request(false, &headers)).await.unwrap();
        let grpc = svc.oneshot(request(true, &headers)).await.unwrap();
        assert_eq!(rest.status(), StatusCode::UNAUTHORIZED, "{reason:?}");
        assert_grpc_twin(&rest, &grpc, "16");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{reason:?}");
        assert_eq!(stats.rejected(reason), 2, "{reason:?}");
    }
}

#[tokio::test]
async fn a_valid_api_key_in_grpc_metadata_reaches_the_handler() {
    // The control: the refusals above are not "every gRPC call refused".
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = ApiKeyLayer::new(ApiKeys::new().with_key("order-service", "v1", ORDER_KEY_V1))
        .layer(handler(&calls));
    let headers = [
        ("x-service-name", "order-service"),
        ("x-api-key", ORDER_KEY_V1),
    ];
    let res = svc.oneshot(request(true, &headers)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "handled");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// === the axum extractor ===

#[cfg(feature = "axum")]
#[tokio::test]
async fn the_extractor_without_verify_layer_is_grpc_internal() {
    use axum::body::Body;
    use tower_jwt_service_auth::jwt::verify::ServiceIdentity;

    async fn whoami(caller: ServiceIdentity) -> String {
        caller.service
    }
    let app = axum::Router::new().route("/user.UserService/GetUser", axum::routing::post(whoami));
    let send = |grpc: bool| {
        let (parts, body) = request(grpc, &[]).into_parts();
        app.clone()
            .oneshot(Request::from_parts(parts, Body::from(body)))
    };
    let into_string = |res: axum::response::Response| async move {
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 4096).await.unwrap();
        Response::from_parts(parts, String::from_utf8(bytes.to_vec()).unwrap())
    };
    let rest = into_string(send(false).await.unwrap()).await;
    let grpc = into_string(send(true).await.unwrap()).await;
    assert_eq!(rest.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_grpc_twin(&rest, &grpc, "13");
}
