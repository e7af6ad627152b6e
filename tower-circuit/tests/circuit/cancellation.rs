use std::time::Duration;

use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_circuit::breaker::{Breaker, CircuitState};
use tower_circuit::classify::ErrorsAsFailures;
use tower_test::mock;

use crate::support::*;

type Mock = mock::Mock<u32, u32>;
type Handle = mock::Handle<u32, u32>;

/// A breaker over a mock whose calls stay pending until the test answers.
fn mocked(
    b: &Breaker,
) -> (
    tower_circuit::breaker::CircuitBreaker<Mock, ErrorsAsFailures>,
    Handle,
) {
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(1_000);
    (b.errors_layer().layer(mock), handle)
}

async fn open_it(
    svc: &mut tower_circuit::breaker::CircuitBreaker<Mock, ErrorsAsFailures>,
    handle: &mut Handle,
) {
    for i in 0..10 {
        let fut = svc.ready().await.unwrap().call(i);
        next_request(handle).await.1.send_error("down");
        assert!(fut.await.is_err());
    }
}

#[tokio::test(start_paused = true)]
async fn dropped_probe_releases_its_slot() {
    let b = breaker(count_config(10));
    let (mut svc, mut handle) = mocked(&b);
    open_it(&mut svc, &mut handle).await;
    advance(Duration::from_secs(30)).await;

    let probe = svc.ready().await.unwrap().call(1);
    let _ = next_request(&mut handle).await;
    let rejected = svc.ready().await.unwrap().call(2).await;
    assert!(rejected.is_err(), "the only probe slot is taken");
    drop(probe); // the caller gave up, e.g. its own timeout fired

    assert_eq!(b.state(), CircuitState::HalfOpen, "not stuck, not closed");
    let probe = svc.ready().await.unwrap().call(3);
    let (req, reply) = next_request(&mut handle).await;
    assert_eq!(req, 3, "a new probe got the freed slot");
    reply.send_response(3);
    assert_eq!(probe.await.unwrap(), 3);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn dropped_closed_call_records_nothing() {
    let b = breaker(count_config(10));
    let (mut svc, mut handle) = mocked(&b);
    let fut = svc.ready().await.unwrap().call(1);
    let _ = next_request(&mut handle).await;
    drop(fut);
    assert_eq!(b.stats().calls, 0);
}

#[tokio::test(start_paused = true)]
async fn outcome_from_before_a_state_change_is_ignored() {
    let b = breaker(count_config(10));
    let (mut svc, mut handle) = mocked(&b);
    let old = svc.ready().await.unwrap().call(1);
    let (_, old_reply) = next_request(&mut handle).await;

    b.force_open();
    b.reset(); // closed again, with a fresh window
    old_reply.send_error("failed long ago");
    assert!(old.await.is_err());
    assert_eq!(
        b.stats().calls,
        0,
        "the stale failure did not enter the new window"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_probe_success_does_not_close_a_reopened_circuit() {
    let b = breaker(count_config(10).half_open_max_calls(2));
    let (mut svc, mut handle) = mocked(&b);
    open_it(&mut svc, &mut handle).await;
    advance(Duration::from_secs(30)).await;

    let slow_probe = svc.ready().await.unwrap().call(1);
    let (_, slow_reply) = next_request(&mut handle).await;
    let failing_probe = svc.ready().await.unwrap().call(2);
    next_request(&mut handle).await.1.send_error("down");
    assert!(failing_probe.await.is_err());
    assert_eq!(b.state(), CircuitState::Open);

    slow_reply.send_response(1);
    assert_eq!(slow_probe.await.unwrap(), 1);
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "a probe of the old half-open cannot close it"
    );
}

#[tokio::test(start_paused = true)]
async fn stale_probe_dropped_after_reopen_does_not_free_a_new_slot() {
    let b = breaker(count_config(10).half_open_max_calls(2));
    let (mut svc, mut handle) = mocked(&b);
    open_it(&mut svc, &mut handle).await;
    advance(Duration::from_secs(30)).await;
    let stale = svc.ready().await.unwrap().call(1);
    let _ = next_request(&mut handle).await;
    let failing = svc.ready().await.unwrap().call(2);
    next_request(&mut handle).await.1.send_error("down");
    assert!(failing.await.is_err());

    advance(Duration::from_secs(30)).await; // half-open again, two fresh slots
    let a = svc.ready().await.unwrap().call(3);
    let b2 = svc.ready().await.unwrap().call(4);
    drop(stale); // from the previous half-open
    let third = svc.ready().await.unwrap().call(5);
    let third = tokio::time::timeout(Duration::from_secs(3600), third).await;
    assert!(
        matches!(third, Ok(Err(_))),
        "both slots of this half-open are still taken, so the call is rejected at once"
    );
    drop((a, b2));
}

#[tokio::test(start_paused = true)]
async fn probe_finishing_after_a_forced_open_does_not_close_it() {
    let b = breaker(count_config(10));
    let (mut svc, mut handle) = mocked(&b);
    open_it(&mut svc, &mut handle).await;
    advance(Duration::from_secs(30)).await;
    let probe = svc.ready().await.unwrap().call(1);
    let (_, reply) = next_request(&mut handle).await;
    b.force_open();
    reply.send_response(1);
    assert_eq!(probe.await.unwrap(), 1);
    assert_eq!(b.state(), CircuitState::ForcedOpen);
}
