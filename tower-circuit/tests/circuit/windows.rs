use std::time::Duration;

use tokio::time::advance;
use tower_circuit::breaker::{CircuitState, Config, Window};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn count_window_slides_after_many_successes() {
    // A window that never slid would need 10,000 failures to reach 50 %.
    let b = breaker(count_config(100));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 10_000).await;
    assert_eq!(b.stats().calls, 100, "the window holds the last 100 calls");
    calls(&mut svc, Call::Fail, 49).await;
    assert_eq!(b.state(), CircuitState::Closed);
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(
        b.state(),
        CircuitState::Open,
        "50 failures among the last 100 calls"
    );
}

#[tokio::test(start_paused = true)]
async fn count_window_evicts_oldest_outcome() {
    let b = breaker(count_config(4).minimum_calls(4).failure_rate_threshold(1.0));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 3).await;
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.stats().failures, 3);
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.stats().failures, 2, "the oldest failure left the window");
    assert_eq!(b.stats().calls, 4);
}

/// Two tasks on two workers calling through one breaker, `n` calls each,
/// the outcome of each task's `i`-th call given by `outcome`.
async fn on_two_workers(svc: &TestService, outcome: fn(usize) -> Call, n: usize) {
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                for i in 0..n {
                    let _ = call(&mut svc, outcome(i)).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

// With calls from several cores the count window takes successes in by
// per-core batches; every decision must still count each call recorded
// before it, and only the window's oldest end may be out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_window_fed_from_two_workers_counts_every_call_and_trips_on_the_rate() {
    let b = breaker(count_config(100));
    let (svc, _) = service(&b);
    on_two_workers(&svc, |_| Call::Ok, 20_000).await;
    let stats = b.stats();
    assert_eq!((stats.calls, stats.failures), (100, 0));

    // One call in three fails on each worker: about 33 of the last 100,
    // give or take the 11 places a batch of 12 may move them.
    let third = |i: usize| {
        if i.is_multiple_of(3) {
            Call::Fail
        } else {
            Call::Ok
        }
    };
    on_two_workers(&svc, third, 20_000).await;
    assert_eq!(b.state(), CircuitState::Closed, "{:?}", b.stats());
    let stats = b.stats();
    assert_eq!(stats.calls, 100);
    assert!((20..=46).contains(&stats.failures), "{stats:?}");

    // Two calls in three fail: it opens.
    let two_thirds = |i: usize| {
        if i.is_multiple_of(3) {
            Call::Ok
        } else {
            Call::Fail
        }
    };
    on_two_workers(&svc, two_thirds, 20_000).await;
    assert_eq!(b.state(), CircuitState::Open);
}

fn time_config() -> Config {
    Config::default()
        .window(Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        })
        .minimum_calls(10)
        .failure_rate_threshold(0.5)
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_outcomes_older_than_its_duration() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 4).await;
    calls(&mut svc, Call::Ok, 4).await;
    assert_eq!(b.stats().calls, 8);
    advance(Duration::from_secs(10)).await;
    assert_eq!(b.stats().calls, 0, "everything is 10 s old");
    // The old failures no longer count: 4 new failures in 10 calls is 40 %.
    calls(&mut svc, Call::Ok, 6).await;
    calls(&mut svc, Call::Fail, 4).await;
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_window_slides_bucket_by_bucket() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 5).await; // bucket 0
    advance(Duration::from_secs(5)).await;
    calls(&mut svc, Call::Ok, 3).await; // bucket 5
    advance(Duration::from_millis(4_999)).await;
    assert_eq!(b.stats().calls, 8, "at 9.999 s both buckets are inside");
    advance(Duration::from_millis(1)).await;
    assert_eq!(b.stats().calls, 3, "at 10 s the first bucket left");
    advance(Duration::from_secs(5)).await;
    assert_eq!(b.stats().calls, 0);
}

/// A call that finishes exactly where a bucket ends belongs to the next
/// bucket, and leaves the window with it, not with the bucket before.
#[tokio::test(start_paused = true)]
async fn a_call_on_a_bucket_boundary_falls_in_the_next_bucket() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 1).await; // bucket 0: [0 s, 1 s)
    advance(Duration::from_secs(1)).await;
    calls(&mut svc, Call::Ok, 1).await; // at 1 s: bucket 1
    advance(Duration::from_secs(9)).await;
    let stats = b.stats();
    assert_eq!(
        (stats.calls, stats.failures),
        (1, 0),
        "at 10 s bucket 0 left, bucket 1 is still inside"
    );
}

#[tokio::test(start_paused = true)]
async fn time_window_opens_once_rate_crosses_threshold() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 10).await;
    advance(Duration::from_secs(6)).await;
    calls(&mut svc, Call::Fail, 9).await;
    assert_eq!(b.state(), CircuitState::Closed, "9 of 19");
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(b.state(), CircuitState::Open, "10 of 20");
}

#[tokio::test(start_paused = true)]
async fn time_window_opens_when_successes_expire_around_recent_failures() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 10).await;
    advance(Duration::from_secs(5)).await;
    calls(&mut svc, Call::Fail, 4).await;
    calls(&mut svc, Call::Ok, 6).await;
    assert_eq!(b.state(), CircuitState::Closed, "4 of 20");
    // The first 10 successes expire: 4 of 10 left, then 5 of 11, then 6 of 12.
    advance(Duration::from_secs(5)).await;
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(b.state(), CircuitState::Closed);
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn time_window_checks_the_rule_at_bucket_boundaries() {
    let b = breaker(time_config());
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 9).await;
    assert_eq!(b.state(), CircuitState::Closed, "below the minimum of 10");
    advance(Duration::from_secs(1)).await;
    // A success in a new bucket brings the window to 10 calls, 9 failed.
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.state(), CircuitState::Open);
}
