//! The receiver decides what a caller may do: with a per-issuer policy
//! (`Verifier::grant`), a caller holds only the permissions it claims *and*
//! is granted. A service holding only its own private key cannot grant
//! itself more.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use serde_json::Value;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::{ServiceIdentity, Verifier};

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");
const USER_KEY: &[u8] = include_bytes!("keys/user-service.key.pem");
const USER_PUB: &[u8] = include_bytes!("keys/user-service.pub.pem");

type Svc = BoxCloneService<Request<String>, Response<String>, Infallible>;

/// A route requiring `permission` behind `verify`; the handler keeps the
/// identity it was handed.
fn route(verify: &VerifyLayer, permission: &str) -> (Svc, Arc<Mutex<Vec<ServiceIdentity>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    let svc = ServiceBuilder::new()
        .layer(verify.clone())
        .layer(RequirePermissionLayer::new(permission.to_owned()))
        .service(service_fn(move |req: Request<String>| {
            let caller = req.extensions().get::<ServiceIdentity>().cloned().unwrap();
            keep.lock().unwrap().push(caller);
            async { Ok::<_, Infallible>(Response::new("handled".to_owned())) }
        }));
    (BoxCloneService::new(svc), seen)
}

/// The user service's verifier: order-service and user-service keys, and
/// order-service granted `read:users` only.
fn verifier() -> Verifier {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap())
        .with(VerifyingKey::ed25519_pem("user-1", "user-service", USER_PUB).unwrap());
    Verifier::new("user-service", keys).grant("order-service", ["read:users"])
}

/// order-service's token for the user service, claiming `permissions`:
/// signed with its own, real key.
fn order_token(permissions: &[&str]) -> String {
    Signer::new(
        "order-service",
        SigningKey::ed25519_pem("order-1", ORDER_KEY).unwrap(),
    )
    .permissions(permissions.iter().copied())
    .sign("user-service")
    .unwrap()
    .token
}

async fn send(svc: &Svc, token: &str) -> (StatusCode, Value) {
    let req = Request::put("/users/7")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let res = svc.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let body = serde_json::from_str(res.body()).unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn a_permission_claimed_beyond_the_grant_is_trimmed_and_the_route_needing_it_is_403() {
    let verify = VerifyLayer::new(verifier());
    let (write, written) = route(&verify, "write:users");
    let token = order_token(&["read:users", "write:users"]);

    let (status, body) = send(&write, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(
        body["message"],
        "the caller lacks the permission `write:users`"
    );
    assert!(written.lock().unwrap().is_empty(), "the handler never ran");

    let stats = verify.stats();
    assert_eq!(stats.permissions_trimmed, 1);
    assert_eq!(stats.verified, 1, "the token itself is valid");
}

#[tokio::test]
async fn the_handler_sees_only_the_granted_permissions() {
    let verify = VerifyLayer::new(verifier());
    let (read, seen) = route(&verify, "read:users");
    let token = order_token(&["read:users", "write:users", "admin"]);
    for _ in 0..2 {
        assert_eq!(send(&read, &token).await.0, StatusCode::OK);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for caller in seen.iter() {
        assert_eq!(caller.service, "order-service");
        assert_eq!(caller.permissions, ["read:users"]);
    }
    let stats = verify.stats();
    assert_eq!(
        stats.cache_hits, 1,
        "the second request came from the cache"
    );
    assert_eq!(stats.permissions_trimmed, 2, "counted for every request");
}

#[tokio::test]
async fn a_token_within_its_grant_is_not_trimmed() {
    let verify = VerifyLayer::new(verifier());
    let (read, _) = route(&verify, "read:users");
    assert_eq!(
        send(&read, &order_token(&["read:users"])).await.0,
        StatusCode::OK
    );
    assert_eq!(verify.stats().permissions_trimmed, 0);
}

#[tokio::test]
async fn an_issuer_without_a_grant_is_refused_403() {
    // user-service has a trusted key but no row in the policy.
    let verify = VerifyLayer::new(verifier());
    let (read, seen) = route(&verify, "read:users");
    let token = Signer::new(
        "user-service",
        SigningKey::ed25519_pem("user-1", USER_KEY).unwrap(),
    )
    .permissions(["read:users"])
    .sign("user-service")
    .unwrap()
    .token;
    let (status, body) = send(&read, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(
        body["message"],
        "the caller is granted no permissions by this service"
    );
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(verify.stats().rejected, [("issuer_not_granted", 1)]);
}

#[tokio::test]
async fn an_empty_grant_admits_the_caller_with_no_permissions() {
    let verify = VerifyLayer::new(verifier().grant("user-service", Vec::<String>::new()));
    let token = Signer::new(
        "user-service",
        SigningKey::ed25519_pem("user-1", USER_KEY).unwrap(),
    )
    .permissions(["read:users"])
    .sign("user-service")
    .unwrap()
    .token;
    let (read, _) = route(&verify, "read:users");
    assert_eq!(send(&read, &token).await.0, StatusCode::FORBIDDEN);
    assert_eq!(verify.stats().verified, 1);
    assert_eq!(verify.stats().permissions_trimmed, 1);
}

#[tokio::test]
async fn grants_for_one_issuer_add_up() {
    let verifier = verifier().grant("order-service", ["write:users"]);
    let caller = verifier
        .verify(&order_token(&["read:users", "write:users", "admin"]))
        .unwrap();
    assert_eq!(caller.permissions, ["read:users", "write:users"]);
}

#[tokio::test]
async fn without_a_policy_the_claims_are_believed() {
    // The opt-in default, documented: a verifier without grants.
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap());
    let verify = VerifyLayer::new(Verifier::new("user-service", keys));
    let (write, _) = route(&verify, "write:users");
    assert_eq!(
        send(&write, &order_token(&["write:users"])).await.0,
        StatusCode::OK
    );
}
