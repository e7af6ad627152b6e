//! The client and server layers, end to end in-process: the client layer
//! signs, the server layer verifies, and every refusal is an exact RFC 6750
//! answer that never reaches the handler.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::client::SignTokenLayer;
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");

fn signer() -> Signer {
    Signer::new(
        "order-service",
        SigningKey::ed25519_pem("order-1", ORDER_KEY).unwrap(),
    )
    .permissions(["read:users"])
}

fn verify_layer() -> VerifyLayer {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap());
    VerifyLayer::new(Verifier::new("user-service", keys))
}

/// The user service: verifies, requires `permission`, and answers with the
/// caller's name; counts how often the handler ran.
fn user_service(
    verify: VerifyLayer,
    permission: &str,
) -> (
    impl Service<Request<String>, Response = Response<String>, Error = Infallible> + Clone,
    Arc<AtomicUsize>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let count = calls.clone();
    let svc = ServiceBuilder::new()
        .layer(verify)
        .layer(RequirePermissionLayer::new(permission.to_owned()))
        .service(service_fn(move |req: Request<String>| {
            count.fetch_add(1, Ordering::SeqCst);
            let caller = req
                .extensions()
                .get::<ServiceIdentity>()
                .unwrap()
                .service
                .clone();
            async move { Ok::<_, Infallible>(Response::new(caller)) }
        }));
    (svc, calls)
}

fn get(authorization: &[&str]) -> Request<String> {
    let mut req = Request::get("/users/7");
    for value in authorization {
        req = req.header(AUTHORIZATION, *value);
    }
    req.body(String::new()).unwrap()
}

async fn refused(req: Request<String>) -> (StatusCode, String, Value) {
    let (svc, calls) = user_service(verify_layer(), "read:users");
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler must not run");
    let www = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_str(res.body()).unwrap();
    (res.status(), www, body)
}

fn token() -> String {
    signer().sign("user-service").unwrap().token
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_bearer() {
    let (status, www, body) = refused(get(&[])).await;
    assert_eq!((status, www.as_str()), (StatusCode::UNAUTHORIZED, "Bearer"));
    assert_eq!(body["error"], "missing_token");
    assert_eq!(body["message"], "a bearer token is required");
}

#[tokio::test]
async fn several_authorization_headers_get_401_invalid_token() {
    let t = format!("Bearer {}", token());
    let (status, www, body) = refused(get(&[&t, &t])).await;
    assert_eq!(
        (status, www.as_str()),
        (StatusCode::UNAUTHORIZED, "Bearer error=\"invalid_token\"")
    );
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn another_scheme_gets_401_invalid_token() {
    for value in [
        "Basic b3JkZXI6cGFzcw==",
        "Token abc",
        "Bearer",
        "Bearer    ",
    ] {
        let (status, www, _) = refused(get(&[value])).await;
        assert_eq!(
            (status, www.as_str()),
            (StatusCode::UNAUTHORIZED, "Bearer error=\"invalid_token\""),
            "{value}"
        );
    }
}

#[tokio::test]
async fn a_non_ascii_header_gets_401_invalid_token() {
    let mut req = get(&[]);
    req.headers_mut().insert(
        AUTHORIZATION,
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    );
    let (status, _, body) = refused(req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_token_for_another_audience_gets_401() {
    let other = signer().sign("notification-service").unwrap().token;
    let (status, _, body) = refused(get(&[&format!("Bearer {other}")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "the token is not meant for this service");
}

#[tokio::test]
async fn a_tampered_token_gets_401() {
    // Change a character in the middle of the signature: every bit there
    // is signature data.
    let mut t: Vec<char> = token().chars().collect();
    let middle = t.len() - 40;
    t[middle] = if t[middle] == 'A' { 'B' } else { 'A' };
    let t: String = t.into_iter().collect();
    let (status, _, body) = refused(get(&[&format!("Bearer {t}")])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_token");
}

#[tokio::test]
async fn a_caller_without_the_permission_gets_403_insufficient_scope() {
    let (svc, calls) = user_service(verify_layer(), "write:users");
    let res = svc
        .oneshot(get(&[&format!("Bearer {}", token())]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()[WWW_AUTHENTICATE],
        "Bearer error=\"insufficient_scope\""
    );
    let body: Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(
        body,
        json!({ "error": "insufficient_scope", "message": "the caller lacks the permission `write:users`" })
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_permission_layer_alone_refuses_unverified_requests() {
    let svc = RequirePermissionLayer::new("read:users").layer(service_fn(
        |_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) },
    ));
    let res = svc.oneshot(get(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refusals_are_counted_by_reason() {
    let verify = verify_layer();
    let (svc, _) = user_service(verify.clone(), "read:users");
    svc.clone().oneshot(get(&[])).await.unwrap();
    svc.clone().oneshot(get(&[])).await.unwrap();
    svc.oneshot(get(&["Basic x"])).await.unwrap();
    assert_eq!(
        verify.stats().rejected,
        vec![("malformed", 1), ("missing", 2)]
    );
}

#[tokio::test]
async fn a_verified_token_is_served_from_the_cache_the_second_time() {
    let verify = verify_layer();
    let (svc, calls) = user_service(verify.clone(), "read:users");
    let bearer = format!("Bearer {}", token());
    for _ in 0..3 {
        let res = svc.clone().oneshot(get(&[&bearer])).await.unwrap();
        assert_eq!(res.body(), "order-service");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let stats = verify.stats();
    assert_eq!((stats.verified, stats.cache_hits), (3, 2));
    assert_eq!(verify.cached_tokens(), 1);
}

#[tokio::test]
async fn the_cache_can_be_turned_off() {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap());
    let verify = VerifyLayer::with_cache(Verifier::new("user-service", keys), 0);
    let (svc, _) = user_service(verify.clone(), "read:users");
    let bearer = format!("Bearer {}", token());
    svc.clone().oneshot(get(&[&bearer])).await.unwrap();
    svc.oneshot(get(&[&bearer])).await.unwrap();
    assert_eq!(verify.stats().cache_hits, 0);
}

// === the client layer ===

/// The `Authorization` values the user service received.
type Seen = Arc<std::sync::Mutex<Vec<String>>>;

/// The user service behind the client layer, in-process.
fn client_to_users(
    permission: &str,
) -> (
    impl Service<Request<String>, Response = Response<String>, Error = tower::BoxError> + Clone,
    Seen,
) {
    let (users, _) = user_service(verify_layer(), permission);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let recording = service_fn(move |req: Request<String>| {
        log.lock()
            .unwrap()
            .push(req.headers()[AUTHORIZATION].to_str().unwrap().to_owned());
        users.clone().oneshot(req)
    });
    let client = SignTokenLayer::new(signer(), "user-service").layer(recording);
    (client, seen)
}

#[tokio::test]
async fn the_client_layer_round_trips_with_the_right_audience() {
    let (client, _) = client_to_users("read:users");
    let res = client.oneshot(get(&[])).await.unwrap();
    assert_eq!(
        (res.status(), res.body().as_str()),
        (StatusCode::OK, "order-service")
    );
}

#[tokio::test]
async fn a_permission_the_client_lacks_is_denied_end_to_end() {
    let (client, _) = client_to_users("write:users");
    assert_eq!(
        client.oneshot(get(&[])).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(start_paused = true)]
async fn the_client_reuses_its_token_until_80_percent_of_its_lifetime() {
    let (client, seen) = client_to_users("read:users");
    client.clone().oneshot(get(&[])).await.unwrap();
    tokio::time::advance(Duration::from_secs(239)).await;
    client.clone().oneshot(get(&[])).await.unwrap();
    tokio::time::advance(Duration::from_secs(1)).await; // 240 s: 80 % of 300
    client.oneshot(get(&[])).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], seen[1], "reused before 80 %");
    assert_ne!(seen[1], seen[2], "a fresh token at 80 %");
}

#[tokio::test]
async fn a_401_drops_the_cached_token() {
    let answers = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (n, log) = (answers.clone(), seen.clone());
    let server = service_fn(move |req: Request<String>| {
        log.lock()
            .unwrap()
            .push(req.headers()[AUTHORIZATION].clone());
        let status = if n.fetch_add(1, Ordering::SeqCst) == 0 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        async move {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap(),
            )
        }
    });
    let client = SignTokenLayer::new(signer(), "user-service").layer(server);
    client.clone().oneshot(get(&[])).await.unwrap();
    client.clone().oneshot(get(&[])).await.unwrap();
    client.oneshot(get(&[])).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_ne!(seen[0], seen[1], "re-signed after the 401");
    assert_eq!(seen[1], seen[2], "cached again after a success");
    assert!(seen[0].is_sensitive(), "the header is marked sensitive");
}

/// Every service type of the crate hands out what it wraps, as tower's do:
/// `get_ref`, `get_mut` and `into_inner`.
#[test]
fn every_service_gives_access_to_its_inner_service() {
    use tower_jwt_service_auth::api_key::{ApiKeyClientLayer, ApiKeyLayer, ApiKeys};

    #[derive(Debug, PartialEq)]
    struct Inner(u32);

    let mut sign = SignTokenLayer::new(signer(), "user-service").layer(Inner(1));
    sign.get_mut().0 += 1;
    assert_eq!(sign.get_ref(), &Inner(2));
    assert_eq!(sign.into_inner(), Inner(2));

    let mut verify = verify_layer().layer(Inner(1));
    verify.get_mut().0 += 1;
    assert_eq!(verify.get_ref(), &Inner(2));
    assert_eq!(verify.into_inner(), Inner(2));

    let mut permission = RequirePermissionLayer::new("read:users").layer(Inner(1));
    permission.get_mut().0 += 1;
    assert_eq!(permission.get_ref(), &Inner(2));
    assert_eq!(permission.into_inner(), Inner(2));

    let mut api_key = ApiKeyLayer::new(ApiKeys::new()).layer(Inner(1));
    api_key.get_mut().0 += 1;
    assert_eq!(api_key.get_ref(), &Inner(2));
    assert_eq!(api_key.into_inner(), Inner(2));

    let mut api_key_client = ApiKeyClientLayer::new("order-service", "k7Hq2-random-secret")
        .unwrap()
        .layer(Inner(1));
    api_key_client.get_mut().0 += 1;
    assert_eq!(api_key_client.get_ref(), &Inner(2));
    assert_eq!(api_key_client.into_inner(), Inner(2));
}
