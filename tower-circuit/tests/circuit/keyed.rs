use std::time::Duration;

use http::Request;
use tokio::time::advance;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitState};
use tower_circuit::classify::ErrorsAsFailures;
use tower_circuit::keyed::{self, KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_circuit::registry::Registry;

use crate::support::*;

/// Requests are `(host, ok)`; the key is the host.
fn host(req: &(&'static str, bool)) -> &'static str {
    req.0
}

fn keyed_service(
    breakers: &KeyedBreakers<&'static str>,
) -> impl Service<(&'static str, bool), Response = (), Error = BoxError> {
    ServiceBuilder::new()
        .layer(
            KeyedCircuitBreakerLayer::new(
                breakers.clone(),
                host as fn(&(&'static str, bool)) -> &'static str,
            )
            .classifier(ErrorsAsFailures),
        )
        .service(service_fn(|(_, ok): (&'static str, bool)| async move {
            if ok {
                Ok(())
            } else {
                Err::<(), BoxError>("down".into())
            }
        }))
}

fn template() -> tower_circuit::breaker::BreakerBuilder {
    Breaker::builder("upstream").config(count_config(10))
}

#[tokio::test(start_paused = true)]
async fn breakers_are_independent_per_key() {
    let breakers = KeyedBreakers::new(template()).unwrap();
    let mut svc = keyed_service(&breakers);
    for _ in 0..10 {
        let _ = svc.ready().await.unwrap().call(("a", false)).await;
    }
    assert_eq!(breakers.get(&"a").state(), CircuitState::Open);
    assert!(svc.ready().await.unwrap().call(("b", true)).await.is_ok());
    assert_eq!(breakers.get(&"b").state(), CircuitState::Closed);
    assert_eq!(breakers.get(&"a").name(), "upstream/a");
}

#[tokio::test(start_paused = true)]
async fn evicts_idle_breakers_first_when_full() {
    let breakers = KeyedBreakers::with_limits(template(), 2, Duration::from_secs(60)).unwrap();
    breakers.get(&"old");
    advance(Duration::from_secs(30)).await;
    breakers.get(&"recent");
    advance(Duration::from_secs(31)).await; // "old" is idle, "recent" is not
    breakers.get(&"new");
    assert_eq!(breakers.len(), 2);
    assert!(!breakers.contains(&"old"));
    assert!(breakers.contains(&"recent") && breakers.contains(&"new"));
}

#[tokio::test(start_paused = true)]
async fn evicts_least_recently_used_when_full_and_none_idle() {
    let breakers = KeyedBreakers::with_limits(template(), 2, Duration::from_secs(600)).unwrap();
    breakers.get(&"a");
    advance(Duration::from_secs(1)).await;
    breakers.get(&"b");
    advance(Duration::from_secs(1)).await;
    breakers.get(&"a"); // a is now more recent than b
    advance(Duration::from_secs(1)).await;
    breakers.get(&"c");
    assert!(breakers.contains(&"a") && breakers.contains(&"c"));
    assert!(!breakers.contains(&"b"));
}

#[tokio::test(start_paused = true)]
async fn evict_idle_removes_only_unused_breakers() {
    let breakers = KeyedBreakers::with_limits(template(), 10, Duration::from_secs(60)).unwrap();
    breakers.get(&"a");
    advance(Duration::from_secs(59)).await;
    breakers.get(&"b");
    advance(Duration::from_secs(1)).await;
    assert_eq!(breakers.evict_idle(), 1);
    assert!(!breakers.contains(&"a") && breakers.contains(&"b"));
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_reject_an_invalid_template() {
    let bad = Breaker::builder("x").config(count_config(10).minimum_calls(0));
    assert!(KeyedBreakers::<String>::new(bad).is_err());
}

#[test]
fn authority_key_uses_the_uri_then_the_host_header() {
    let absolute = Request::get("http://users.internal:3000/users/1")
        .body(())
        .unwrap();
    assert_eq!(keyed::authority(&absolute), "users.internal:3000");
    let relative = Request::get("/users/1")
        .header("host", "orders.internal")
        .body(())
        .unwrap();
    assert_eq!(keyed::authority(&relative), "orders.internal");
    let neither = Request::get("/").body(()).unwrap();
    assert_eq!(keyed::authority(&neither), "unknown");
}

#[tokio::test(start_paused = true)]
async fn registry_lists_every_breaker_once() {
    let registry = Registry::new();
    let users = Breaker::new("users", count_config(10)).unwrap();
    registry.register(&users);
    registry.register(&users.clone());
    let breakers = KeyedBreakers::new(template()).unwrap();
    registry.register_keyed(&breakers);
    breakers.get(&"b");
    breakers.get(&"a");
    users.force_open();

    let snapshot = registry.snapshot();
    let names: Vec<&str> = snapshot.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["users", "upstream/a", "upstream/b"]);
    assert_eq!(snapshot[0].state, CircuitState::ForcedOpen);
    assert!(
        registry
            .get("upstream/a")
            .is_some_and(|b| b.same_as(&breakers.get(&"a")))
    );
    assert!(registry.get("nope").is_none());
}
