use std::time::Duration;

use tokio::time::advance;
use tower::Layer;
use tower_circuit::breaker::{Breaker, CircuitState};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn services_built_from_one_layer_share_the_breaker() {
    let b = breaker(count_config(10));
    let layer = b.errors_layer();
    let (mut first, _) = service(layer.breaker());
    let (mut second, _) = service(&b);
    calls(&mut first, Call::Fail, 5).await;
    calls(&mut second, Call::Fail, 5).await;
    assert_eq!(b.state(), CircuitState::Open);
    assert!(is_circuit_open(&call(&mut first, Call::Ok).await));
    let built = layer.layer(tower::service_fn(|()| async {
        Ok::<_, tower_circuit::BoxError>(())
    }));
    assert!(built.breaker().same_as(&b));
}

#[tokio::test(start_paused = true)]
async fn force_open_rejects_until_reset() {
    let b = breaker(count_config(10));
    let (mut svc, hits_) = service(&b);
    b.force_open();
    assert_eq!(b.state(), CircuitState::ForcedOpen);
    let err = call(&mut svc, Call::Ok).await.unwrap_err();
    let open = err
        .downcast_ref::<tower_circuit::breaker::CircuitOpen>()
        .unwrap();
    assert_eq!(
        (open.state(), open.retry_after()),
        (CircuitState::ForcedOpen, None)
    );
    advance(Duration::from_secs(3600)).await;
    assert!(
        is_circuit_open(&call(&mut svc, Call::Ok).await),
        "no timer ends it"
    );
    assert_eq!(hits(&hits_), 0);
    b.reset();
    assert_eq!(call(&mut svc, Call::Ok).await.unwrap(), "ok");
}

#[tokio::test(start_paused = true)]
async fn reset_closes_with_fresh_window() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(b.state(), CircuitState::Open);
    b.reset();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.stats().calls, 0);
    calls(&mut svc, Call::Fail, 9).await;
    assert_eq!(b.state(), CircuitState::Closed, "old failures are gone");
}

#[tokio::test(start_paused = true)]
async fn disable_never_rejects_but_keeps_counting() {
    let b = breaker(count_config(10));
    let (mut svc, hits_) = service(&b);
    b.disable();
    calls(&mut svc, Call::Fail, 50).await;
    assert_eq!(b.state(), CircuitState::Disabled);
    assert_eq!(hits(&hits_), 50);
    let m = b.stats();
    assert_eq!((m.calls, m.failures, m.failure_rate), (10, 10, 1.0));
    b.reset();
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(b.state(), CircuitState::Open, "reset turns it back on");
}

#[tokio::test(start_paused = true)]
async fn metrics_report_window_counters_and_time_left() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 5).await;
    calls(&mut svc, Call::Fail, 5).await;
    advance(Duration::from_secs(4)).await;
    calls(&mut svc, Call::Ok, 3).await;
    let m = b.stats();
    assert_eq!(m.name, "test");
    assert_eq!(m.state, CircuitState::Open);
    assert_eq!((m.calls, m.failures, m.failure_rate), (10, 5, 0.5));
    assert_eq!((m.rejected, m.times_opened, m.fallbacks), (3, 1, 0));
    assert_eq!(m.since_last_transition, Duration::from_secs(4));
    assert_eq!(m.retry_after, Some(Duration::from_secs(26)));
    assert_eq!(b.retry_after(), Some(Duration::from_secs(26)));
}

#[test]
fn handle_is_clone_send_sync() {
    fn assert_shared<T: Clone + Send + Sync + 'static>() {}
    assert_shared::<Breaker>();
    assert_shared::<tower_circuit::breaker::CircuitBreakerLayer>();
}

#[tokio::test(start_paused = true)]
async fn repeating_a_manual_change_reports_nothing_new() {
    let changes = std::sync::Arc::new(std::sync::Mutex::new(0));
    let seen = changes.clone();
    let b = Breaker::builder("users")
        .config(count_config(10))
        .on_state_change(move |_| *seen.lock().unwrap() += 1)
        .build()
        .unwrap();
    b.force_open();
    b.force_open();
    assert_eq!((*changes.lock().unwrap(), b.stats().times_opened), (1, 1));
    b.reset();
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 3).await;
    b.reset(); // already closed: no event, but a fresh window
    assert_eq!(*changes.lock().unwrap(), 2);
    assert_eq!(b.stats().calls, 0);
}
