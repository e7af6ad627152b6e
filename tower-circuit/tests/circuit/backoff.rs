use std::time::Duration;

use tokio::time::advance;
use tower_circuit::breaker::{CircuitOpen, CircuitState, OpenBackoff};

use crate::support::*;

async fn open_for(svc: &mut TestService) -> Duration {
    let err = call(svc, Call::Ok).await.unwrap_err();
    err.downcast_ref::<CircuitOpen>()
        .and_then(CircuitOpen::retry_after)
        .expect("open, with a known time left")
}

fn backoff(jitter: f64) -> OpenBackoff {
    OpenBackoff {
        multiplier: 2.0,
        max: Duration::from_secs(100),
        jitter,
    }
}

#[tokio::test(start_paused = true)]
async fn open_duration_grows_on_repeated_trips_and_resets_on_close() {
    let b = breaker(count_config(10).open_backoff(backoff(0.0)));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(open_for(&mut svc).await, Duration::from_secs(30));
    advance(Duration::from_secs(30)).await;
    calls(&mut svc, Call::Fail, 1).await; // failed probe
    assert_eq!(open_for(&mut svc).await, Duration::from_secs(60));
    advance(Duration::from_secs(60)).await;
    calls(&mut svc, Call::Fail, 1).await;
    assert_eq!(
        open_for(&mut svc).await,
        Duration::from_secs(100),
        "capped at max"
    );
    advance(Duration::from_secs(100)).await;
    calls(&mut svc, Call::Ok, 1).await;
    assert_eq!(b.state(), CircuitState::Closed);
    calls(&mut svc, Call::Fail, 10).await;
    assert_eq!(
        open_for(&mut svc).await,
        Duration::from_secs(30),
        "a close resets the growth"
    );
}

#[tokio::test(start_paused = true)]
async fn without_backoff_open_duration_stays_the_same() {
    let b = breaker(count_config(10));
    let (mut svc, _) = service(&b);
    calls(&mut svc, Call::Fail, 10).await;
    for _ in 0..3 {
        assert_eq!(open_for(&mut svc).await, Duration::from_secs(30));
        advance(Duration::from_secs(30)).await;
        calls(&mut svc, Call::Fail, 1).await;
    }
}

#[tokio::test(start_paused = true)]
async fn jitter_shortens_the_open_duration_by_at_most_its_fraction() {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let b = breaker(count_config(10).open_backoff(backoff(0.5)));
        let (mut svc, _) = service(&b);
        calls(&mut svc, Call::Fail, 10).await;
        let d = open_for(&mut svc).await;
        assert!(
            d >= Duration::from_secs(15) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        seen.push(d);
    }
    seen.dedup();
    assert!(
        seen.len() > 1,
        "twenty breakers did not all draw the same jitter"
    );
}
