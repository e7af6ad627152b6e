use std::time::Duration;

use tower_circuit::breaker::{Breaker, BreakerConfigError, Config, OpenBackoff, Window};

fn build(config: Config) -> BreakerConfigError {
    Breaker::new("bad", config).expect_err("the config is invalid")
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.failure_rate_threshold, 0.5);
    assert_eq!(c.minimum_calls, 10);
    assert_eq!(c.open_duration, Duration::from_secs(30));
    assert_eq!(c.half_open_max_calls, 1);
    assert_eq!(
        c.window,
        Window::Time {
            duration: Duration::from_secs(10),
            buckets: 10
        }
    );
    assert!(c.slow_call.is_none() && c.open_backoff.is_none());
    assert!(c.validate().is_ok());
}

#[test]
fn rejects_failure_rate_threshold_outside_zero_to_one() {
    for rate in [0.0, -0.1, 1.01, f64::NAN] {
        let err = build(Config::default().failure_rate_threshold(rate));
        assert!(
            matches!(err, BreakerConfigError::FailureRateThreshold(_)),
            "{rate}: {err}"
        );
    }
    assert!(
        Config::default()
            .failure_rate_threshold(1.0)
            .validate()
            .is_ok()
    );
}

#[test]
fn rejects_zero_minimum_calls() {
    assert_eq!(
        build(Config::default().minimum_calls(0)),
        BreakerConfigError::MinimumCalls
    );
}

#[test]
fn rejects_minimum_calls_larger_than_count_window() {
    let err = build(
        Config::default()
            .window(Window::Count { size: 5 })
            .minimum_calls(6),
    );
    assert_eq!(
        err,
        BreakerConfigError::MinimumCallsExceedWindow {
            minimum_calls: 6,
            size: 5
        }
    );
    assert!(err.to_string().contains("could never open"));
}

#[test]
fn rejects_empty_count_window() {
    let err = build(
        Config::default()
            .window(Window::Count { size: 0 })
            .minimum_calls(1),
    );
    assert_eq!(err, BreakerConfigError::WindowSize);
}

#[test]
fn rejects_time_window_without_buckets() {
    let err = build(Config::default().window(Window::Time {
        duration: Duration::from_secs(10),
        buckets: 0,
    }));
    assert_eq!(err, BreakerConfigError::Buckets);
}

#[test]
fn rejects_zero_durations() {
    assert_eq!(
        build(Config::default().open_duration(Duration::ZERO)),
        BreakerConfigError::ZeroDuration("open_duration")
    );
    let err = build(Config::default().window(Window::Time {
        duration: Duration::ZERO,
        buckets: 10,
    }));
    assert_eq!(err, BreakerConfigError::ZeroDuration("window duration"));
    let err = build(Config::default().slow_call(Duration::ZERO, 0.5));
    assert_eq!(err, BreakerConfigError::ZeroDuration("slow_call.duration"));
}

#[test]
fn rejects_buckets_shorter_than_a_nanosecond() {
    let err = build(Config::default().window(Window::Time {
        duration: Duration::from_nanos(5),
        buckets: 10,
    }));
    assert_eq!(err, BreakerConfigError::BucketTooShort);
}

#[test]
fn rejects_zero_half_open_calls() {
    assert_eq!(
        build(Config::default().half_open_max_calls(0)),
        BreakerConfigError::HalfOpenMaxCalls
    );
}

#[test]
fn rejects_slow_call_rate_outside_zero_to_one() {
    let err = build(Config::default().slow_call(Duration::from_secs(1), 1.5));
    assert_eq!(err, BreakerConfigError::SlowCallRateThreshold(1.5));
}

#[test]
fn rejects_bad_open_backoff() {
    let base = OpenBackoff::exponential(Duration::from_secs(300));
    let err = build(Config::default().open_backoff(OpenBackoff {
        multiplier: 0.5,
        ..base
    }));
    assert_eq!(err, BreakerConfigError::BackoffMultiplier(0.5));
    let err = build(Config::default().open_backoff(OpenBackoff {
        jitter: 2.0,
        ..base
    }));
    assert_eq!(err, BreakerConfigError::Jitter(2.0));
    let err = build(Config::default().open_backoff(OpenBackoff {
        max: Duration::from_secs(1),
        ..base
    }));
    assert_eq!(err, BreakerConfigError::BackoffMax);
}

#[test]
fn errors_explain_themselves() {
    let err = build(Config::default().failure_rate_threshold(2.0));
    assert_eq!(
        err.to_string(),
        "failure_rate_threshold must be in (0, 1], got 2"
    );
}

#[test]
fn every_size_allocated_from_configuration_is_bounded() {
    use tower_circuit::breaker::{MAX_BUCKETS, MAX_WINDOW_SIZE};
    use tower_circuit::keyed::{KeyedBreakers, MAX_KEYS};
    let time = |buckets| {
        Config::default().window(Window::Time {
            duration: Duration::from_secs(10),
            buckets,
        })
    };
    assert!(Breaker::new("ok", time(MAX_BUCKETS)).is_ok());
    for buckets in [MAX_BUCKETS + 1, 2_222_222_210, u32::MAX] {
        assert_eq!(
            build(time(buckets)),
            BreakerConfigError::TooManyBuckets {
                buckets,
                max: MAX_BUCKETS
            }
        );
    }
    let count = |size| Config::default().window(Window::Count { size });
    assert!(Breaker::new("ok", count(MAX_WINDOW_SIZE)).is_ok());
    for size in [MAX_WINDOW_SIZE + 1, u32::MAX] {
        let err = build(count(size));
        assert_eq!(
            err,
            BreakerConfigError::WindowTooLarge {
                size,
                max: MAX_WINDOW_SIZE
            }
        );
        assert!(err.to_string().contains("at most 100000"), "{err}");
    }
    let keyed = |max_keys| {
        KeyedBreakers::<String>::with_limits(
            Breaker::builder("k"),
            max_keys,
            Duration::from_secs(60),
        )
    };
    assert!(keyed(MAX_KEYS).is_ok());
    assert_eq!(
        keyed(usize::MAX).unwrap_err(),
        BreakerConfigError::TooManyKeys {
            max_keys: usize::MAX,
            max: MAX_KEYS
        }
    );
}
