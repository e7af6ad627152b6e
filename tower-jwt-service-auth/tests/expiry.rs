//! A token stops being accepted at `exp` plus the leeway, whether it is
//! verified afresh or served from the verified-token cache: both read the
//! verifier's clock, which these tests set.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::keys::{KeySet, SigningKey, VerifyingKey};
use tower_jwt_service_auth::jwt::server::VerifyLayer;
use tower_jwt_service_auth::jwt::sign::Signer;
use tower_jwt_service_auth::jwt::verify::Verifier;

const ORDER_KEY: &[u8] = include_bytes!("keys/order-service.key.pem");
const ORDER_PUB: &[u8] = include_bytes!("keys/order-service.pub.pem");

const LEEWAY: u64 = 30;

/// A clock the test moves, in whole seconds since the epoch.
#[derive(Clone)]
struct TestClock(Arc<AtomicU64>);

impl TestClock {
    fn at(seconds: u64) -> Self {
        TestClock(Arc::new(AtomicU64::new(seconds)))
    }

    fn set(&self, seconds: u64) {
        self.0.store(seconds, Ordering::SeqCst);
    }

    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

/// A token minted now (by the real clock), valid for 5 minutes; its `exp`.
fn token() -> (String, u64) {
    let signer = Signer::new(
        "order-service",
        SigningKey::ed25519_pem("order-1", ORDER_KEY).unwrap(),
    )
    .ttl(Duration::from_secs(300));
    let token = signer.sign("user-service").unwrap();
    (token.token, token.claims.exp)
}

/// The layer, reading `clock`, with a cache of `capacity` tokens.
fn layer(clock: &TestClock, capacity: usize) -> VerifyLayer {
    let keys = KeySet::new()
        .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap());
    let clock = clock.clone();
    let verifier = Verifier::new("user-service", keys)
        .leeway(Duration::from_secs(LEEWAY))
        .clock(move || clock.now());
    VerifyLayer::with_cache(verifier, capacity)
}

async fn status(layer: &VerifyLayer, token: &str) -> StatusCode {
    let svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::get("/users/7")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn a_cached_token_is_accepted_until_a_second_before_exp_plus_leeway() {
    let (token, exp) = token();
    let clock = TestClock::at(exp - 300);
    let layer = layer(&clock, 100);
    assert_eq!(status(&layer, &token).await, StatusCode::OK);
    assert_eq!(layer.cached_tokens(), 1);

    clock.set(exp + LEEWAY - 1);
    assert_eq!(status(&layer, &token).await, StatusCode::OK);
    assert_eq!(layer.stats().cache_hits, 1, "served from the cache");
}

#[tokio::test]
async fn a_cached_token_is_refused_from_exp_plus_leeway() {
    for after in [0, 1] {
        let (token, exp) = token();
        let clock = TestClock::at(exp - 300);
        let layer = layer(&clock, 100);
        assert_eq!(status(&layer, &token).await, StatusCode::OK);
        assert_eq!(layer.cached_tokens(), 1);

        clock.set(exp + LEEWAY + after);
        assert_eq!(
            status(&layer, &token).await,
            StatusCode::UNAUTHORIZED,
            "exp + leeway + {after} s"
        );
        let stats = layer.stats();
        assert_eq!(stats.cache_hits, 0, "the expired entry is not served");
        assert_eq!(stats.rejected, [("expired", 1)]);
        assert_eq!(layer.cached_tokens(), 0, "and it is dropped");
    }
}

#[tokio::test]
async fn a_fresh_token_is_accepted_until_a_second_before_exp_plus_leeway() {
    let (token, exp) = token();
    let clock = TestClock::at(exp + LEEWAY - 1);
    let layer = layer(&clock, 0);
    assert_eq!(status(&layer, &token).await, StatusCode::OK);
    assert_eq!(layer.stats().cache_hits, 0);
}

#[tokio::test]
async fn a_fresh_token_is_refused_from_exp_plus_leeway() {
    for after in [0, 1] {
        let (token, exp) = token();
        let clock = TestClock::at(exp + LEEWAY + after);
        let layer = layer(&clock, 0);
        assert_eq!(status(&layer, &token).await, StatusCode::UNAUTHORIZED);
        assert_eq!(layer.stats().rejected, [("expired", 1)]);
    }
}

#[tokio::test]
async fn the_cache_and_a_fresh_check_agree_within_the_last_second() {
    // Half a second before the edge: both accept; at the edge: both refuse.
    let (token, exp) = token();
    let edge = UNIX_EPOCH + Duration::from_secs(exp + LEEWAY);
    for (now, expected) in [
        (edge - Duration::from_millis(500), StatusCode::OK),
        (edge, StatusCode::UNAUTHORIZED),
    ] {
        let keys = KeySet::new()
            .with(VerifyingKey::ed25519_pem("order-1", "order-service", ORDER_PUB).unwrap());
        let clock = Arc::new(std::sync::Mutex::new(edge - Duration::from_secs(300)));
        let read = clock.clone();
        let verifier = Verifier::new("user-service", keys)
            .leeway(Duration::from_secs(LEEWAY))
            .clock(move || *read.lock().unwrap());
        let cached = VerifyLayer::with_cache(verifier.clone(), 100);
        assert_eq!(status(&cached, &token).await, StatusCode::OK);
        *clock.lock().unwrap() = now;
        let fresh = VerifyLayer::with_cache(verifier, 0);
        assert_eq!(status(&cached, &token).await, expected, "cached at {now:?}");
        assert_eq!(status(&fresh, &token).await, expected, "fresh at {now:?}");
    }
}
