use std::time::Duration;

use tokio::time::advance;
use tower_circuit::breaker::CircuitState;

use crate::support::*;

const SLOW: Duration = Duration::from_millis(600);
const FAST: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn slow_calls_open_the_circuit_even_when_they_succeed() {
    let b = breaker(count_config(10).slow_call(Duration::from_millis(500), 0.5));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::SlowOk(FAST), 5).await;
    calls(&mut svc, Call::SlowOk(SLOW), 4).await;
    assert_eq!(b.state(), CircuitState::Closed);
    calls(&mut svc, Call::SlowOk(SLOW), 1).await;
    let m = b.stats();
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!((m.calls, m.failures, m.slow_calls), (10, 0, 5));
    assert_eq!(m.slow_call_rate, 0.5);
}

#[tokio::test(start_paused = true)]
async fn calls_at_exactly_the_slow_duration_are_not_slow() {
    let b = breaker(count_config(10).slow_call(Duration::from_millis(500), 0.1));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::SlowOk(Duration::from_millis(500)), 10).await;
    assert_eq!(b.stats().slow_calls, 0);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn without_the_rule_slow_calls_are_not_counted() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::SlowOk(SLOW), 10).await;
    assert_eq!(b.stats().slow_calls, 0);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn slow_probe_reopens() {
    let b = breaker(count_config(10).slow_call(Duration::from_millis(500), 0.5));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    assert_eq!(call(&mut svc, Call::SlowOk(SLOW)).await.unwrap(), "slow");
    assert_eq!(b.state(), CircuitState::Open);
}
