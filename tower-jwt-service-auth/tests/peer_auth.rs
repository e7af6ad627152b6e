//! `PeerAuthLayer`: callers authenticated by their client certificate
//! alone, with the permissions the receiver's policy grants. The handler
//! counts its calls, so each refusal also shows it never ran.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::{RequirePermissionLayer, ServiceIdentity};
use tower_jwt_service_auth::mtls::{PeerAuthLayer, PeerIdentity, PeerPolicy, Rejection, SpiffeId};

fn policy() -> PeerPolicy {
    PeerPolicy::new("demo.local")
        .unwrap()
        .grant("api-gateway", ["read:users", "write:users"])
        .grant("order-service", ["read:users"])
        .grant("auditor", Vec::<String>::new())
}

struct Outcome {
    res: Response<String>,
    calls: usize,
    json: serde_json::Value,
}

/// `method path` from `peer` (or over plaintext) through the layer and a
/// route requiring `permission`; the handler answers the caller and its
/// permissions.
async fn call(layer: &PeerAuthLayer, permission: &str, peer: Option<&str>, grpc: bool) -> Outcome {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let stack = ServiceBuilder::new()
        .layer(layer.clone())
        .layer(RequirePermissionLayer::new(permission.to_owned()))
        .service(service_fn(move |req: Request<String>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let caller = req.extensions().get::<ServiceIdentity>().cloned().unwrap();
            async move {
                Ok::<_, Infallible>(Response::new(format!(
                    "{} {}",
                    caller.service,
                    caller.permissions.join(",")
                )))
            }
        }));
    let mut req = Request::post("/users");
    if grpc {
        req = req.header("content-type", "application/grpc");
    }
    let mut req = req.body(String::new()).unwrap();
    if let Some(id) = peer {
        req.extensions_mut()
            .insert(PeerIdentity::new(SpiffeId::parse(id).unwrap()));
    }
    let res = stack.oneshot(req).await.unwrap();
    let json = serde_json::from_str(res.body()).unwrap_or_default();
    Outcome {
        res,
        calls: calls.load(Ordering::SeqCst),
        json,
    }
}

#[tokio::test]
async fn a_known_peer_gets_its_grant_as_a_service_identity() {
    let layer = PeerAuthLayer::new(policy());
    let out = call(
        &layer,
        "write:users",
        Some("spiffe://demo.local/api-gateway"),
        false,
    )
    .await;
    assert_eq!(out.res.status(), StatusCode::OK);
    assert_eq!(out.res.body(), "api-gateway read:users,write:users");
    assert_eq!(layer.stats().authenticated(), 1);
}

#[tokio::test]
async fn a_known_peer_without_the_permission_is_forbidden() {
    let layer = PeerAuthLayer::new(policy());
    let out = call(
        &layer,
        "write:users",
        Some("spiffe://demo.local/order-service"),
        false,
    )
    .await;
    assert_eq!(out.res.status(), StatusCode::FORBIDDEN);
    assert_eq!(out.calls, 0);
    // Known, with an empty grant: authenticated, and may do nothing.
    let out = call(
        &layer,
        "read:users",
        Some("spiffe://demo.local/auditor"),
        false,
    )
    .await;
    assert_eq!(out.res.status(), StatusCode::FORBIDDEN);
    assert_eq!(layer.stats().authenticated(), 2);
}

#[tokio::test]
async fn a_request_without_a_peer_identity_is_refused_401() {
    let layer = PeerAuthLayer::new(policy());
    let out = call(&layer, "read:users", None, false).await;
    assert_eq!(out.res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(out.calls, 0);
    assert_eq!(out.json["error"], "missing_client_certificate");
    assert_eq!(layer.stats().rejected(Rejection::MissingPeer), 1);
}

#[tokio::test]
async fn a_peer_the_policy_does_not_name_is_refused_401() {
    let layer = PeerAuthLayer::new(policy());
    for id in [
        "spiffe://demo.local/billing-service",
        // Paths of several segments name no service.
        "spiffe://demo.local/ns/api-gateway",
        "spiffe://demo.local",
    ] {
        let out = call(&layer, "read:users", Some(id), false).await;
        assert_eq!(out.res.status(), StatusCode::UNAUTHORIZED, "{id}");
        assert_eq!(out.json["error"], "unknown_peer", "{id}");
        assert_eq!(out.calls, 0);
    }
    assert_eq!(layer.stats().rejected(Rejection::UnknownPeer), 3);
    assert_eq!(layer.stats().authenticated(), 0);
}

#[tokio::test]
async fn a_peer_of_another_trust_domain_is_refused_401() {
    let layer = PeerAuthLayer::new(policy());
    let out = call(
        &layer,
        "read:users",
        Some("spiffe://elsewhere.test/api-gateway"),
        false,
    )
    .await;
    assert_eq!(out.res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(out.json["error"], "wrong_trust_domain");
    assert_eq!(out.calls, 0);
    assert_eq!(layer.stats().rejected(Rejection::WrongTrustDomain), 1);
}

#[tokio::test]
async fn grpc_calls_are_refused_unauthenticated() {
    let layer = PeerAuthLayer::new(policy());
    let out = call(&layer, "read:users", None, true).await;
    assert_eq!(out.res.status(), StatusCode::OK);
    assert_eq!(out.res.headers()["grpc-status"], "16");
    assert_eq!(
        out.res.headers()["grpc-message"],
        "a verified client certificate is required (mutual TLS)"
    );
    assert!(out.res.body().is_empty());
    assert_eq!(out.calls, 0);
}

#[test]
fn a_policy_refuses_an_invalid_trust_domain() {
    assert!(PeerPolicy::new("Demo.local").is_err());
    assert!(PeerPolicy::new("demo.local:8443").is_err());
    assert!(PeerPolicy::new("").is_err());
    assert_eq!(
        PeerPolicy::new("demo.local").unwrap().trust_domain(),
        "demo.local"
    );
}

#[test]
fn every_refusal_is_401() {
    for r in Rejection::ALL {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{r:?}");
    }
}
