use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::advance;
use tower_circuit::breaker::{Breaker, CircuitState};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn state_change_hook_sees_every_transition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let b = Breaker::builder("users")
        .config(count_config(10))
        .on_state_change(move |c| log.lock().unwrap().push((c.name.to_string(), c.from, c.to)))
        .build()
        .unwrap();
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    calls(&mut svc, Call::Ok, 1).await;
    b.force_open();
    b.disable();
    b.reset();
    let name = || "users".to_string();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (name(), CircuitState::Closed, CircuitState::Open),
            (name(), CircuitState::Open, CircuitState::HalfOpen),
            (name(), CircuitState::HalfOpen, CircuitState::Closed),
            (name(), CircuitState::Closed, CircuitState::ForcedOpen),
            (name(), CircuitState::ForcedOpen, CircuitState::Disabled),
            (name(), CircuitState::Disabled, CircuitState::Closed),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn state_change_reports_the_rates_that_decided_it() {
    let changes = Arc::new(Mutex::new(Vec::new()));
    let log = changes.clone();
    let b = Breaker::builder("users")
        .config(count_config(10))
        .on_state_change(move |c| log.lock().unwrap().push(c.clone()))
        .build()
        .unwrap();
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Ok, 4).await;
    calls(&mut svc, Call::Fail, 6).await;
    advance(Duration::from_secs(30)).await;
    calls(&mut svc, Call::Ok, 1).await;
    let changes = changes.lock().unwrap();
    let opened = &changes[0];
    assert_eq!(
        (opened.to, opened.calls, opened.failure_rate),
        (CircuitState::Open, 10, 0.6)
    );
    assert_eq!(opened.open_for, Some(Duration::from_secs(30)));
    let closed = &changes[2];
    assert_eq!(closed.to, CircuitState::Closed);
    assert_eq!(
        (closed.calls, closed.failure_rate),
        (1, 0.0),
        "the probes decided it"
    );
}

#[tokio::test(start_paused = true)]
async fn rejected_hook_fires_per_rejection() {
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let log = rejected.clone();
    let b = Breaker::builder("users")
        .config(count_config(10))
        .on_rejected(move |r| log.lock().unwrap().push((r.state, r.retry_after)))
        .build()
        .unwrap();
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(10)).await;
    calls(&mut svc, Call::Ok, 2).await;
    assert_eq!(
        *rejected.lock().unwrap(),
        vec![(CircuitState::Open, Some(Duration::from_secs(20))); 2]
    );
}

#[tokio::test(start_paused = true)]
async fn every_state_change_is_logged_with_name_rate_and_calls() {
    let logs = crate::logs::capture();

    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    advance(Duration::from_secs(30)).await;
    calls(&mut svc, Call::Ok, 1).await;

    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].contains("WARN") && lines[0].contains("circuit breaker opened"));
    for line in &lines {
        assert!(line.contains("breaker=\"test\""), "{line}");
        assert!(
            line.contains("failure_rate=") && line.contains("calls="),
            "{line}"
        );
        assert!(line.contains("tower_circuit::breaker:"), "{line}");
    }
    assert!(lines[0].contains("failure_rate=1.0") && lines[0].contains("calls=10"));
    assert!(lines[1].contains("INFO") && lines[1].contains("half-open"));
    assert!(lines[2].contains("INFO") && lines[2].contains("circuit breaker closed"));
}
