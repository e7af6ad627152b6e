use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen};
use tower_circuit::fallback::FallbackLayer;

use crate::support::*;

/// A service that fails for odd ids, behind `breaker`, behind `fallback`.
fn guarded<H>(
    breaker: &Breaker,
    fallback: FallbackLayer<fn(&u32) -> u32, H>,
) -> impl Service<u32, Response = String, Error = BoxError>
where
    H: Fn(u32, &BoxError) -> Option<String> + Clone,
{
    ServiceBuilder::new()
        .layer(fallback)
        .layer(breaker.errors_layer())
        .service(service_fn(|id: u32| async move {
            if id.is_multiple_of(2) {
                Ok(format!("live {id}"))
            } else {
                Err::<String, BoxError>(format!("user {id} failed").into())
            }
        }))
}

fn id(req: &u32) -> u32 {
    *req
}

fn cached(id: u32, _: &BoxError) -> Option<String> {
    Some(format!("cached {id}"))
}

#[tokio::test(start_paused = true)]
async fn answers_for_an_open_circuit_and_counts_it() {
    let used = Arc::new(AtomicUsize::new(0));
    let counter = used.clone();
    let b = Breaker::builder("users")
        .config(count_config(10))
        .on_fallback(move |f| {
            assert!(f.circuit_open);
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let mut svc = guarded(
        &b,
        FallbackLayer::new(id as fn(&u32) -> u32, cached).counted_in(&b),
    );
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), "live 2");
    b.force_open();
    assert_eq!(
        svc.ready().await.unwrap().call(4).await.unwrap(),
        "cached 4"
    );
    assert_eq!(b.stats().fallbacks, 1);
    assert_eq!(used.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn passes_other_errors_through_by_default() {
    let b = breaker(count_config(10));
    let mut svc = guarded(
        &b,
        FallbackLayer::new(id as fn(&u32) -> u32, cached).counted_in(&b),
    );
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert_eq!(err.to_string(), "user 3 failed");
    assert_eq!(b.stats().fallbacks, 0);
}

#[tokio::test(start_paused = true)]
async fn on_any_error_answers_failures_too() {
    let b = breaker(count_config(10));
    let mut svc = guarded(
        &b,
        FallbackLayer::new(id as fn(&u32) -> u32, cached)
            .on_any_error()
            .counted_in(&b),
    );
    assert_eq!(
        svc.ready().await.unwrap().call(3).await.unwrap(),
        "cached 3"
    );
    assert_eq!(b.stats().fallbacks, 1);
    assert_eq!(b.stats().failures, 1, "the breaker still saw the failure");
}

#[tokio::test(start_paused = true)]
async fn handler_returning_none_passes_the_error_on() {
    let b = breaker(count_config(10));
    let only_even = |id: u32, _: &BoxError| (id.is_multiple_of(2)).then(|| format!("cached {id}"));
    let mut svc = guarded(
        &b,
        FallbackLayer::new(id as fn(&u32) -> u32, only_even).counted_in(&b),
    );
    b.force_open();
    assert_eq!(
        svc.ready().await.unwrap().call(2).await.unwrap(),
        "cached 2"
    );
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    assert_eq!(b.stats().fallbacks, 1);
}
