//! Property tests: each sliding window against a naive model.
//!
//! The breaker is disabled so that it only counts, never trips; its
//! metrics then show the window's contents, which must equal what a naive
//! list of every call (filtered by age or position) says, over random
//! sequences of outcomes and clock advances.

use std::time::Duration;

use proptest::prelude::*;
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, Config, Window};

#[derive(Debug, Clone)]
enum Step {
    Call { fail: bool },
    Advance(Duration),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        4 => any::<bool>().prop_map(|fail| Step::Call { fail }),
        1 => (0u64..3_000).prop_map(|ms| Step::Advance(Duration::from_millis(ms))),
    ];
    prop::collection::vec(step, 0..300)
}

/// Runs `steps` against a disabled breaker with `window`, calling `check`
/// with the breaker's (calls, failures) and the list of (time, failed) of
/// every call so far, after each step.
fn run(window: Window, steps: Vec<Step>, check: impl Fn(u64, (u64, u64), &[(u64, bool)])) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
        let start = tokio::time::Instant::now();
        let breaker =
            Breaker::new("model", Config::default().window(window).minimum_calls(1)).unwrap();
        breaker.disable();
        let mut svc = breaker
            .errors_layer()
            .layer(service_fn(|fail: bool| async move {
                if fail {
                    Err::<(), BoxError>("x".into())
                } else {
                    Ok(())
                }
            }));
        let mut history = Vec::new();
        for step in steps {
            match step {
                Step::Call { fail } => {
                    let _ = svc.ready().await.unwrap().call(fail).await;
                    history.push((start.elapsed().as_millis() as u64, fail));
                }
                Step::Advance(d) => tokio::time::advance(d).await,
            }
            let m = breaker.stats();
            let now = start.elapsed().as_millis() as u64;
            check(now, (m.calls, m.failures), &history);
        }
    });
}

fn count(calls: &[&(u64, bool)]) -> (u64, u64) {
    let failures = calls.iter().filter(|(_, fail)| *fail).count();
    (calls.len() as u64, failures as u64)
}

proptest! {
    #[test]
    fn count_window_holds_exactly_the_last_n_calls(size in 1u32..200, steps in steps()) {
        run(Window::Count { size }, steps, |_, seen, history| {
            let last: Vec<_> = history.iter().rev().take(size as usize).collect();
            assert_eq!(seen, count(&last));
        });
    }

    #[test]
    fn time_window_holds_exactly_the_calls_of_its_buckets(
        buckets in 1u32..12,
        bucket_ms in 1u64..1_500,
        steps in steps(),
    ) {
        let window = Window::Time {
            duration: Duration::from_millis(bucket_ms * u64::from(buckets)),
            buckets,
        };
        run(window, steps, |now, seen, history| {
            // The window holds the current bucket and the `buckets - 1` before it.
            let current = now / bucket_ms;
            let inside: Vec<_> = history
                .iter()
                .filter(|(at, _)| at / bucket_ms + u64::from(buckets) > current)
                .collect();
            assert_eq!(seen, count(&inside));
        });
    }
}
