//! Issue 11's breaker defects: decimal thresholds, stale outcomes in the
//! figures, hook order across threads, side-effect-free reads, failing fast
//! in `poll_ready`, and arithmetic on huge durations.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use tokio::time::advance;
use tower::{Layer, Service, ServiceExt};
use tower_circuit::breaker::events::StateChange;
use tower_circuit::breaker::{Breaker, CircuitOpen, CircuitState, Config, OpenBackoff, Window};
use tower_test::mock;

use crate::support::*;

fn windows(minimum_calls: u32) -> [Config; 2] {
    [
        Config::default()
            .window(Window::Count { size: 100 })
            .minimum_calls(minimum_calls),
        Config::default()
            .window(Window::Time {
                duration: Duration::from_secs(3600),
                buckets: 10,
            })
            .minimum_calls(minimum_calls),
    ]
}

/// Failure counts around `threshold · 100`, where rounding decides.
fn around(threshold: f64) -> impl Iterator<Item = usize> {
    let k = (threshold * 100.0).round() as usize;
    [k.saturating_sub(1), k, k + 1]
        .into_iter()
        .filter(|k| (1..=100).contains(k))
}

/// Every threshold 0.01, 0.02, ... 1.00, both windows: the breaker opens
/// exactly when the failure rate `stats()` reports reaches the threshold.
/// Before, 55 failures in 100 calls at 0.55 (and 7 at 0.07, 28 at 0.28...)
/// stayed closed while reporting 0.55.
#[tokio::test(start_paused = true)]
async fn failure_rate_trips_iff_the_reported_rate_reaches_the_threshold() {
    for i in 1..=100u32 {
        let threshold = f64::from(i) / 100.0;
        for config in windows(100) {
            for failures in around(threshold) {
                let b = breaker(config.clone().failure_rate_threshold(threshold));
                let (mut svc, _) = service(&b);
                calls(&mut svc, Call::Ok, 100 - failures).await;
                calls(&mut svc, Call::Fail, failures).await;
                let m = b.stats();
                assert_eq!((m.calls, m.failures as usize), (100, failures));
                assert_eq!(m.failure_rate, failures as f64 / 100.0);
                assert_eq!(
                    m.state == CircuitState::Open,
                    m.failure_rate >= threshold,
                    "threshold {threshold}, {failures} failures of 100, {:?}",
                    config.window
                );
            }
        }
    }
}

/// The same for the slow-call rate.
#[tokio::test(start_paused = true)]
async fn slow_call_rate_trips_iff_the_reported_rate_reaches_the_threshold() {
    for i in 1..=100u32 {
        let threshold = f64::from(i) / 100.0;
        for config in windows(100) {
            for slow in around(threshold) {
                let b = breaker(
                    config
                        .clone()
                        .failure_rate_threshold(1.0)
                        .slow_call(Duration::from_millis(1), threshold),
                );
                let (mut svc, _) = service(&b);
                calls(&mut svc, Call::Ok, 100 - slow).await;
                calls(&mut svc, Call::SlowOk(Duration::from_millis(2)), slow).await;
                let m = b.stats();
                assert_eq!((m.calls, m.slow_calls as usize), (100, slow));
                assert_eq!(
                    m.state == CircuitState::Open,
                    m.slow_call_rate >= threshold,
                    "threshold {threshold}, {slow} slow of 100, {:?}",
                    config.window
                );
            }
        }
    }
}

/// A call admitted while closed that finishes after the circuit opened is
/// dropped from the window's figures too, not only from the decision.
#[tokio::test(start_paused = true)]
async fn an_outcome_from_before_the_circuit_opened_is_not_counted() {
    for window in [
        Window::Count { size: 20 },
        Window::Time {
            duration: Duration::from_secs(60),
            buckets: 6,
        },
    ] {
        let b = breaker(
            Config::default()
                .window(window)
                .minimum_calls(10)
                .failure_rate_threshold(0.5),
        );
        let (mock, mut handle) = mock::pair::<u32, u32>();
        handle.allow(100);
        let mut svc = b.errors_layer().layer(mock);
        let slow = svc.ready().await.unwrap().call(0);
        let (_, reply) = next_request(&mut handle).await;
        for i in 1..=10 {
            let fut = svc.ready().await.unwrap().call(i);
            next_request(&mut handle).await.1.send_error("down");
            assert!(fut.await.is_err());
        }
        assert_eq!(b.state(), CircuitState::Open);
        let before = b.stats();
        assert_eq!((before.calls, before.failures), (10, 10));
        reply.send_error("late");
        assert!(slow.await.is_err());
        let after = b.stats();
        assert_eq!(
            (after.calls, after.failures),
            (10, 10),
            "{window:?}: the late outcome was counted"
        );
    }
}

fn state_code(state: CircuitState) -> u8 {
    match state {
        CircuitState::Closed => 0,
        CircuitState::Open => 1,
        CircuitState::HalfOpen => 2,
        CircuitState::ForcedOpen => 3,
        CircuitState::Disabled => 4,
    }
}

/// Threads race to change the state; the hook must see every change in
/// order (numbered 1, 2, 3... each leaving the state the last one entered)
/// and a gauge set from it must end on the real state.
#[test]
fn hooks_run_in_transition_order_across_threads() {
    // 4 threads × 500 calls make at most 2000 changes a round, under the
    // 4096 that may wait for hooks: none may be dropped, however the
    // threads are scheduled.
    for round in 0..20 {
        let seen: Arc<Mutex<Vec<StateChange>>> = Arc::default();
        let gauge = Arc::new(AtomicU8::new(state_code(CircuitState::Closed)));
        let (log, g) = (seen.clone(), gauge.clone());
        let b = Breaker::builder("race")
            .config(count_config(10))
            .on_state_change(move |c| {
                g.store(state_code(c.to), Ordering::SeqCst);
                log.lock().unwrap().push(c.clone());
            })
            .build()
            .unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        match (i + t) % 3 {
                            0 => b.force_open(),
                            1 => b.disable(),
                            _ => b.reset(),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty());
        let mut state = CircuitState::Closed;
        for (i, change) in seen.iter().enumerate() {
            assert_eq!(
                change.sequence,
                i as u64 + 1,
                "round {round}: numbered in order, none dropped"
            );
            assert_eq!(change.from, state, "round {round}: change {i} out of order");
            state = change.to;
        }
        assert_eq!(state, b.state());
        assert_eq!(
            gauge.load(Ordering::SeqCst),
            state_code(b.state()),
            "round {round}"
        );
    }
}

/// A hook that blocks cannot make the queue of unreported changes grow
/// without bound: past 4096 the oldest are dropped, the newest kept, so a
/// gauge set from the hook still ends on the real state.
#[test]
fn a_blocked_hook_keeps_only_the_newest_changes() {
    let seen: Arc<Mutex<Vec<StateChange>>> = Arc::default();
    let gauge = Arc::new(AtomicU8::new(state_code(CircuitState::Closed)));
    let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let (log, g) = (seen.clone(), gauge.clone());
    let b = Breaker::builder("blocked")
        .config(count_config(10))
        .on_state_change(move |c| {
            if c.sequence == 1 {
                entered_tx.send(()).unwrap();
                release_rx.lock().unwrap().recv().unwrap();
            }
            g.store(state_code(c.to), Ordering::SeqCst);
            log.lock().unwrap().push(c.clone());
        })
        .build()
        .unwrap();
    let first = {
        let b = b.clone();
        std::thread::spawn(move || b.force_open())
    };
    entered_rx.recv().unwrap();
    // The first change's hook is blocked: these are queued behind it.
    for _ in 0..2500 {
        b.reset();
        b.force_open();
    }
    b.reset();
    release_tx.send(()).unwrap();
    first.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1 + 4096, "the first, then the newest 4096");
    assert_eq!(seen[0].sequence, 1);
    assert_eq!(seen.last().unwrap().sequence, 1 + 5001);
    assert!(
        seen.windows(2)
            .skip(1)
            .all(|w| w[1].sequence == w[0].sequence + 1)
    );
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(gauge.load(Ordering::SeqCst), state_code(b.state()));
}

/// A hook may read and control the breaker: no deadlock, and a change made
/// from a hook is reported after it, in order.
#[test]
fn a_hook_may_call_back_into_the_breaker() {
    let seen: Arc<Mutex<Vec<(u64, CircuitState)>>> = Arc::default();
    let slot: Arc<Mutex<Option<Breaker>>> = Arc::default();
    let (log, me) = (seen.clone(), slot.clone());
    let b = Breaker::builder("reentrant")
        .config(count_config(10))
        .on_state_change(move |c| {
            log.lock().unwrap().push((c.sequence, c.to));
            let b = me.lock().unwrap().clone().unwrap();
            let _ = b.stats();
            if c.to == CircuitState::ForcedOpen {
                b.disable();
            }
        })
        .build()
        .unwrap();
    *slot.lock().unwrap() = Some(b.clone());
    b.force_open();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(1, CircuitState::ForcedOpen), (2, CircuitState::Disabled)]
    );
    assert_eq!(b.state(), CircuitState::Disabled);
}

/// `state()` and `stats()` report an open circuit whose time is up as
/// half-open without moving it, so they run no hook: a caller may read the
/// breaker while holding a lock its hook takes.
#[tokio::test(start_paused = true)]
async fn reads_have_no_side_effects() {
    let app_lock = Arc::new(Mutex::new(()));
    let hooks = Arc::new(AtomicU64::new(0));
    let (lock, count) = (app_lock.clone(), hooks.clone());
    let b = Breaker::builder("reads")
        .config(count_config(10))
        .on_state_change(move |_| {
            // Would deadlock if run while the reader holds the lock.
            assert!(lock.try_lock().is_ok(), "hook ran under the caller's lock");
            count.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(hooks.load(Ordering::SeqCst), 1);
    advance(Duration::from_secs(30)).await;
    {
        let _held = app_lock.lock().unwrap();
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let m = b.stats();
        assert_eq!((m.state, m.retry_after), (CircuitState::HalfOpen, None));
    }
    assert_eq!(hooks.load(Ordering::SeqCst), 1, "reading moved the breaker");
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(
        hooks.load(Ordering::SeqCst),
        3,
        "the call did: half-open, closed"
    );
    assert_eq!(b.state(), CircuitState::Closed);
}

/// An open circuit does not wait on an inner service that is never ready.
#[tokio::test(start_paused = true)]
async fn poll_ready_fails_fast_while_open() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(0); // never ready
    let mut svc = mock::Spawn::new(b.errors_layer().layer(mock));
    assert!(svc.poll_ready().is_pending(), "closed: the inner readiness");

    b.force_open();
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());

    // Tripped for real (the inner service was ready then), then saturated.
    b.reset();
    handle.allow(10);
    let (mut failing, _) = service(&b);
    calls(&mut failing, Call::Fail, 10).await;
    assert_eq!(b.state(), CircuitState::Open);
    handle.allow(0);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(2).await.unwrap_err();
    let open = err.downcast_ref::<CircuitOpen>().unwrap();
    assert_eq!(open.retry_after(), Some(Duration::from_secs(30)));

    // Once probes may pass, readiness is the inner service's again.
    advance(Duration::from_secs(30)).await;
    assert!(svc.poll_ready().is_pending());
    assert_eq!(b.stats().rejected, 2);
}

/// A call polled ready while open is rejected even if the open duration
/// ends before the call: the inner service was never polled ready.
#[tokio::test(start_paused = true)]
async fn a_call_readied_while_open_is_rejected_even_after_the_open_duration() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(0);
    let (mut failing, _) = service(&b);
    calls(&mut failing, Call::Fail, 10).await;
    let mut svc = mock::Spawn::new(b.errors_layer().layer(mock));
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    advance(Duration::from_secs(31)).await;
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
    handle.allow(1);
    assert!(
        matches!(svc.poll_ready(), Poll::Ready(Ok(()))),
        "the probe slot was given back"
    );
}

/// `Duration::MAX` as the open duration and backoff cap: no overflow.
#[tokio::test(start_paused = true)]
async fn huge_open_durations_do_not_panic() {
    for jitter in [0.0, 0.5, 1.0] {
        let b = breaker(
            count_config(10)
                .open_duration(Duration::MAX)
                .open_backoff(OpenBackoff {
                    multiplier: 1e300,
                    max: Duration::MAX,
                    jitter,
                }),
        );
        let (mut svc, _) = service(&b);
        calls(&mut svc, Call::Fail, 10).await;
        assert_eq!(b.state(), CircuitState::Open);
        let left = b.retry_after().unwrap();
        assert!(left > Duration::from_secs(86_400 * 365 * 100), "{left:?}");
        let _ = b.stats();
    }
}
