//! Loading breaker configuration from a file (the `serde` feature).
//!
//! Run with `cargo test -p tower-circuit --features serde --test config_serde`;
//! `.ci/run` does.
#![cfg(feature = "serde")]

use std::time::Duration;

use tower_circuit::breaker::{Breaker, Config, OpenBackoff, Window};

#[test]
fn config_deserializes_with_human_durations() {
    let json = r#"{
        "failure_rate_threshold": 0.25,
        "minimum_calls": 20,
        "window": { "kind": "time", "duration": "30s", "buckets": 6 },
        "open_duration": "1.5s",
        "slow_call": { "duration": "250ms", "rate_threshold": 0.8 },
        "open_backoff": { "multiplier": 2.0, "max": "2m", "jitter": 0.1 }
    }"#;
    let config: Config = serde_json::from_str(json).unwrap();
    assert_eq!(config.failure_rate_threshold, 0.25);
    assert_eq!(config.minimum_calls, 20);
    assert_eq!(
        config.window,
        Window::Time {
            duration: Duration::from_secs(30),
            buckets: 6
        }
    );
    assert_eq!(config.open_duration, Duration::from_millis(1500));
    assert_eq!(
        config.slow_call.unwrap().duration,
        Duration::from_millis(250)
    );
    assert_eq!(
        config.open_backoff,
        Some(OpenBackoff {
            multiplier: 2.0,
            max: Duration::from_secs(120),
            jitter: 0.1
        })
    );
    assert_eq!(
        config.half_open_max_calls, 1,
        "missing fields keep their defaults"
    );
}

#[test]
fn durations_may_be_plain_milliseconds() {
    let config: Config = serde_json::from_str(r#"{ "open_duration": 500 }"#).unwrap();
    assert_eq!(config.open_duration, Duration::from_millis(500));
}

#[test]
fn unknown_fields_and_bad_durations_are_rejected_with_a_reason() {
    let err = serde_json::from_str::<Config>(r#"{ "open_duraton": "1s" }"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `open_duraton`"),
        "{err}"
    );
    let err = serde_json::from_str::<Config>(r#"{ "open_duration": "10 parsecs" }"#).unwrap_err();
    assert!(err.to_string().contains("unknown unit"), "{err}");
    let err = serde_json::from_str::<Config>(r#"{ "open_duration": "soon" }"#).unwrap_err();
    assert!(
        err.to_string().contains("needs a unit") || err.to_string().contains("number"),
        "{err}"
    );
}

#[test]
fn a_loaded_config_is_still_validated_when_built() {
    let config: Config = serde_json::from_str(r#"{ "failure_rate_threshold": 1.5 }"#).unwrap();
    let err = Breaker::new("from-file", config).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failure_rate_threshold must be in (0, 1], got 1.5"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_serialize_for_health_endpoints() {
    let breaker = Breaker::new("users", Config::default()).unwrap();
    breaker.force_open();
    let json = serde_json::to_value(breaker.stats()).unwrap();
    assert_eq!(json["name"], "users");
    assert_eq!(json["state"], "forced_open");
    assert_eq!(json["calls"], 0);
    assert!(json["retry_after"].is_null());
}

#[test]
fn windows_too_large_for_memory_are_rejected_not_allocated() {
    use tower_circuit::breaker::{BreakerConfigError, MAX_BUCKETS, MAX_WINDOW_SIZE};
    // Before: passed validation and aborted allocating 26 GB.
    let json = r#"{"window":{"kind":"time","duration":"10s","buckets":2222222210}}"#;
    let config: Config = serde_json::from_str(json).unwrap();
    assert_eq!(
        Breaker::new("users", config).unwrap_err(),
        BreakerConfigError::TooManyBuckets {
            buckets: 2_222_222_210,
            max: MAX_BUCKETS
        }
    );
    let json = r#"{"minimum_calls":5,"window":{"kind":"count","size":4294967295}}"#;
    let config: Config = serde_json::from_str(json).unwrap();
    assert_eq!(
        Breaker::new("users", config).unwrap_err(),
        BreakerConfigError::WindowTooLarge {
            size: u32::MAX,
            max: MAX_WINDOW_SIZE
        }
    );
}
