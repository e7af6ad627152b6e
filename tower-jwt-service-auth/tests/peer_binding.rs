//! Identity binding: over mutual TLS (a request carrying a
//! `PeerIdentity`), a service token or an API key is accepted only from
//! the service the client certificate names. The handler counts its calls,
//! so each refusal also shows the handler never ran.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_service_auth::api_key::{self, ApiKeyLayer, ApiKeys};
use tower_jwt_service_auth::jwt::{
    self, KeySet, ServiceIdentity, Signer, SigningKey, Verifier, VerifyLayer, VerifyingKey,
};
use tower_jwt_service_auth::mtls::{PeerIdentity, SpiffeId};

const SECRET: [u8; 32] = [5; 32];
const ORDER_KEY: &str = "order-v1-9f3Kq2LmX7vB4tR8";

fn verify_layer() -> VerifyLayer {
    let keys = KeySet::new().with(VerifyingKey::hs256("k1", &SECRET).unwrap());
    VerifyLayer::new(
        Verifier::new("user-service", keys)
            .grant("order-service", ["read:users"])
            .grant("api-gateway", ["read:users"]),
    )
}

fn token(issuer: &str) -> String {
    Signer::new(issuer, SigningKey::hs256("k1", &SECRET).unwrap())
        .permissions(["read:users"])
        .sign("user-service")
        .unwrap()
        .token
}

fn peer(id: &str) -> PeerIdentity {
    PeerIdentity::new(SpiffeId::parse(id).unwrap())
}

/// A request with `headers`, over a connection whose client certificate
/// is `over` (or plaintext).
fn request(headers: &[(&str, &str)], over: Option<&str>) -> Request<String> {
    let mut req = Request::get("/users/1");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(String::new()).unwrap();
    if let Some(id) = over {
        req.extensions_mut().insert(peer(id));
    }
    req
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

type Ready = std::future::Ready<Result<Response<String>, Infallible>>;

/// A handler answering the caller's service (from whichever identity the
/// layer inserted), counting its calls.
fn handler(
    calls: Arc<AtomicUsize>,
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = Infallible, Future = Ready>
{
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let who = req
            .extensions()
            .get::<ServiceIdentity>()
            .map(|c| c.service.clone())
            .or_else(|| {
                req.extensions()
                    .get::<api_key::ApiKeyIdentity>()
                    .map(|c| c.service.clone())
            })
            .unwrap_or_default();
        std::future::ready(Ok(Response::new(who)))
    })
}

/// Sends `req` through `layer` to [`handler`]; the response and how often
/// the handler ran.
async fn send(layer: &VerifyLayer, req: Request<String>) -> (Response<String>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let res = layer
        .layer(handler(calls.clone()))
        .oneshot(req)
        .await
        .unwrap();
    (res, calls.load(Ordering::SeqCst))
}

/// [`send`] through an API-key layer.
async fn send_key(layer: &ApiKeyLayer, req: Request<String>) -> (Response<String>, usize) {
    let calls = Arc::new(AtomicUsize::new(0));
    let res = layer
        .layer(handler(calls.clone()))
        .oneshot(req)
        .await
        .unwrap();
    (res, calls.load(Ordering::SeqCst))
}

fn json(res: &Response<String>) -> serde_json::Value {
    serde_json::from_str(res.body()).unwrap()
}

// === tokens ===

#[tokio::test]
async fn a_token_over_its_issuers_connection_is_accepted() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    let req = request(
        &[("authorization", &auth)],
        Some("spiffe://demo.local/order-service"),
    );
    let (res, calls) = send(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "order-service");
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn a_token_over_another_services_connection_is_refused_401_peer_mismatch() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    let req = request(
        &[("authorization", &auth)],
        Some("spiffe://demo.local/api-gateway"),
    );
    let (res, calls) = send(&layer, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls, 0);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let body = json(&res);
    assert_eq!(body["error"], "peer_mismatch");
    assert_eq!(
        body["message"],
        "the token's issuer is not the service named by the client certificate"
    );
    assert_eq!(layer.stats().rejected, [("peer_mismatch", 1)]);
    assert_eq!(layer.stats().verified, 0);
}

#[tokio::test]
async fn a_cached_token_is_still_checked_against_each_requests_peer() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    let own = request(
        &[("authorization", &auth)],
        Some("spiffe://demo.local/order-service"),
    );
    assert_eq!(send(&layer, own).await.0.status(), StatusCode::OK);
    assert_eq!(layer.cached_tokens(), 1);
    let replayed = request(
        &[("authorization", &auth)],
        Some("spiffe://demo.local/api-gateway"),
    );
    let (res, calls) = send(&layer, replayed).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn a_certificate_naming_no_single_service_binds_no_token() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    for id in [
        "spiffe://demo.local",
        "spiffe://demo.local/ns/prod/order-service",
    ] {
        let (res, calls) = send(&layer, request(&[("authorization", &auth)], Some(id))).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{id}");
        assert_eq!(json(&res)["error"], "peer_mismatch", "{id}");
        assert_eq!(calls, 0);
    }
}

#[tokio::test]
async fn a_request_without_a_peer_identity_is_not_bound() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    let (res, calls) = send(&layer, request(&[("authorization", &auth)], None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn a_grpc_call_over_another_services_connection_is_unauthenticated() {
    let layer = verify_layer();
    let auth = bearer(&token("order-service"));
    let req = request(
        &[
            ("authorization", &auth),
            ("content-type", "application/grpc"),
        ],
        Some("spiffe://demo.local/api-gateway"),
    );
    let (res, calls) = send(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn without_peer_binding_a_proxys_connection_carries_its_callers_tokens() {
    let layer = verify_layer().without_peer_binding();
    assert!(!layer.binds_to_peer());
    assert!(verify_layer().binds_to_peer());
    let auth = bearer(&token("order-service"));
    let req = request(
        &[("authorization", &auth)],
        Some("spiffe://demo.local/mesh-proxy"),
    );
    let (res, calls) = send(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
}

#[test]
fn the_rejection_is_its_own() {
    let r = jwt::Rejection::PeerMismatch;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.reason(), "peer_mismatch");
    assert_eq!(r.body_error(), "peer_mismatch");
    assert_eq!(r.error_code(), Some("invalid_token"));
}

// === API keys ===

fn api_key_layer() -> ApiKeyLayer {
    ApiKeyLayer::new(ApiKeys::new().with_key("order-service", "v1", ORDER_KEY))
}

fn key_headers(service: &'static str) -> [(&'static str, &'static str); 2] {
    [("x-service-name", service), ("x-api-key", ORDER_KEY)]
}

#[tokio::test]
async fn an_api_key_over_its_services_connection_is_accepted() {
    let layer = api_key_layer();
    let req = request(
        &key_headers("order-service"),
        Some("spiffe://demo.local/order-service"),
    );
    let (res, calls) = send_key(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
    assert_eq!(layer.stats().accepted(), 1);
}

#[tokio::test]
async fn an_api_key_over_another_services_connection_is_refused_401_peer_mismatch() {
    let layer = api_key_layer();
    let stats = layer.stats();
    let req = request(
        &key_headers("order-service"),
        Some("spiffe://demo.local/api-gateway"),
    );
    let (res, calls) = send_key(&layer, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls, 0);
    let body = json(&res);
    assert_eq!(body["error"], "peer_mismatch");
    assert_eq!(
        body["message"],
        "x-service-name must name the service of the client certificate"
    );
    assert_eq!(stats.rejected(api_key::Rejection::PeerMismatch), 1);
    assert_eq!(stats.rejected_total(), 1);
    assert_eq!(stats.accepted(), 0);
}

#[tokio::test]
async fn a_wrong_api_key_over_another_connection_is_still_a_wrong_key() {
    let layer = api_key_layer();
    let stats = layer.stats();
    let req = request(
        &[("x-service-name", "order-service"), ("x-api-key", "guess")],
        Some("spiffe://demo.local/api-gateway"),
    );
    let (res, _) = send_key(&layer, req).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(&res)["error"], "invalid_api_key");
    assert_eq!(stats.rejected(api_key::Rejection::WrongKey), 1);
}

#[tokio::test]
async fn an_api_key_grpc_call_over_another_connection_is_unauthenticated() {
    let layer = api_key_layer();
    let mut headers = key_headers("order-service").to_vec();
    headers.push(("content-type", "application/grpc"));
    let req = request(&headers, Some("spiffe://demo.local/api-gateway"));
    let (res, calls) = send_key(&layer, req).await;
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(calls, 0);
}

#[tokio::test]
async fn without_peer_binding_an_api_key_passes_any_connection() {
    let layer = api_key_layer().without_peer_binding();
    let req = request(
        &key_headers("order-service"),
        Some("spiffe://demo.local/mesh-proxy"),
    );
    let (res, calls) = send_key(&layer, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls, 1);
}

// === API keys granting permissions ===

#[tokio::test]
async fn an_api_key_layer_with_grants_gives_the_caller_its_grant_as_a_service_identity() {
    let layer = api_key_layer()
        .grant("order-service", ["read:users"])
        .grant("order-service", ["read:users", "read:products"]);
    let seen = Arc::new(std::sync::Mutex::new(None));
    let handler = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            *seen.lock().unwrap() = req.extensions().get::<ServiceIdentity>().cloned();
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        })
    };
    // The caller cannot name its own permissions: there is nowhere to.
    let res = layer
        .layer(handler)
        .oneshot(request(&key_headers("order-service"), None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let identity = seen.lock().unwrap().clone().expect("a ServiceIdentity");
    assert_eq!(identity.service, "order-service");
    assert_eq!(identity.permissions, ["read:users", "read:products"]);
    assert_eq!(identity.token_id, None);
}

#[tokio::test]
async fn an_api_key_caller_without_a_grant_holds_no_permission() {
    let keys = ApiKeys::new()
        .with_key("order-service", "v1", ORDER_KEY)
        .with_key("user-service", "v1", "user-v1-Ta8Gm3Vx2Nb7Lk4R");
    let stack = tower::ServiceBuilder::new()
        .layer(ApiKeyLayer::new(keys).grant("order-service", ["read:users"]))
        .layer(jwt::RequirePermissionLayer::new("read:users"))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let granted = stack
        .clone()
        .oneshot(request(&key_headers("order-service"), None))
        .await
        .unwrap();
    assert_eq!(granted.status(), StatusCode::OK);
    let ungranted = stack
        .oneshot(request(
            &[
                ("x-service-name", "user-service"),
                ("x-api-key", "user-v1-Ta8Gm3Vx2Nb7Lk4R"),
            ],
            None,
        ))
        .await
        .unwrap();
    assert_eq!(ungranted.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_api_key_layer_without_grants_inserts_no_service_identity() {
    let seen = Arc::new(AtomicUsize::new(0));
    let handler = {
        let seen = seen.clone();
        service_fn(move |req: Request<String>| {
            if req.extensions().get::<ServiceIdentity>().is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            async { Ok::<_, Infallible>(Response::new(String::new())) }
        })
    };
    let res = api_key_layer()
        .layer(handler)
        .oneshot(request(&key_headers("order-service"), None))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}
