use std::time::Duration;

use tokio::time::advance;
use tower_circuit::breaker::{CircuitOpen, CircuitState};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn closed_passes_calls_and_counts_outcomes() {
    let b = breaker(count_config(10));
    let (mut svc, hits_) = service(&b);
    assert_eq!(call(&mut svc, Call::Ok).await.unwrap(), "ok");
    assert!(call(&mut svc, Call::Fail).await.is_err());
    let m = b.stats();
    assert_eq!((m.calls, m.failures, hits(&hits_)), (2, 1, 2));
    assert_eq!(m.failure_rate, 0.5);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn opens_when_failure_rate_reaches_threshold() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 5).await;
    calls(&mut svc, Call::Fail, 4).await;
    assert_eq!(
        b.state(),
        CircuitState::Closed,
        "9 calls are below the minimum of 10"
    );
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "5 failures in 10 calls is 50 %"
    );
}

#[tokio::test(start_paused = true)]
async fn stays_closed_below_threshold() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 6).await;
    calls(&mut svc, Call::Fail, 4).await;
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.stats().failure_rate, 0.4);
}

#[tokio::test(start_paused = true)]
async fn does_not_open_below_minimum_calls() {
    let b = breaker(count_config(20).minimum_calls(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 9).await;
    assert_eq!(b.state(), CircuitState::Closed);
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_success_that_reaches_minimum_calls_can_open() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 9).await;
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.state(), CircuitState::Open, "9 failures in 10 calls");
}

#[tokio::test(start_paused = true)]
async fn open_rejects_without_calling_inner() {
    let b = breaker(count_config(10));
    let (mut svc, hits_) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(hits(&hits_), 10);
    for _ in 0..5 {
        assert!(is_circuit_open(&call(&mut svc, Call::Ok).await));
    }
    assert_eq!(hits(&hits_), 10, "the inner service was not called");
    assert_eq!(b.stats().rejected, 5);
}

#[tokio::test(start_paused = true)]
async fn circuit_open_error_carries_name_and_time_left() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(12)).await;
    let err = call(&mut svc, Call::Ok).await.unwrap_err();
    let open = err
        .downcast_ref::<CircuitOpen>()
        .expect("a CircuitOpen error");
    assert_eq!(open.name(), "test");
    assert_eq!(open.state(), CircuitState::Open);
    assert_eq!(open.retry_after(), Some(Duration::from_secs(18)));
    assert_eq!(
        open.to_string(),
        "circuit breaker `test` is open; half-open in 18.000s"
    );
}

#[tokio::test(start_paused = true)]
async fn goes_half_open_after_open_duration() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30) - Duration::from_millis(1)).await;
    assert_eq!(b.state(), CircuitState::Open);
    advance(Duration::from_millis(1)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn successful_probe_closes_with_fresh_window() {
    let b = breaker(count_config(10));
    let (mut svc, hits_) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    assert_eq!(call(&mut svc, Call::Ok).await.unwrap(), "ok");
    assert_eq!(hits(&hits_), 11, "the probe reached the inner service");
    assert_eq!(b.state(), CircuitState::Closed);
    let m = b.stats();
    assert_eq!((m.calls, m.failures), (0, 0), "the window starts empty");
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    assert!(call(&mut svc, Call::Fail).await.is_err());
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.stats().times_opened, 2);
    let err = call(&mut svc, Call::Ok).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));
}

#[tokio::test(start_paused = true)]
async fn needs_every_probe_to_succeed_before_closing() {
    let b = breaker(count_config(10).half_open_max_calls(3));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    calls(&mut svc, Call::Ok, 2).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_max_probes_concurrently() {
    let b = breaker(count_config(10).half_open_max_calls(2));
    let (mock, mut handle) = tower_test::mock::pair::<u32, u32>();
    handle.allow(100);
    let layer = b.errors_layer();
    use tower::{Layer, Service, ServiceExt};
    let mut svc = layer.layer(mock);
    for i in 0..10 {
        let fut = svc.ready().await.unwrap().call(i);
        let (_, reply) = next_request(&mut handle).await;
        reply.send_error("down");
        assert!(fut.await.is_err());
    }
    assert_eq!(b.state(), CircuitState::Open);
    advance(Duration::from_secs(30)).await;

    let first = svc.ready().await.unwrap().call(1);
    let second = svc.ready().await.unwrap().call(2);
    let third = svc.ready().await.unwrap().call(3).await;
    let open = third.unwrap_err();
    let open = open
        .downcast_ref::<CircuitOpen>()
        .expect("third call rejected");
    assert_eq!(open.state(), CircuitState::HalfOpen);
    assert_eq!(open.retry_after(), None);

    // Both probes reached the inner service and are still in flight.
    let (r1, reply1) = next_request(&mut handle).await;
    let (r2, reply2) = next_request(&mut handle).await;
    assert_eq!((r1, r2), (1, 2));
    reply1.send_response(10);
    assert_eq!(first.await.unwrap(), 10);
    assert_eq!(
        b.state(),
        CircuitState::HalfOpen,
        "one of two probes succeeded"
    );
    reply2.send_response(20);
    assert_eq!(second.await.unwrap(), 20);
    assert_eq!(b.state(), CircuitState::Closed);
}
