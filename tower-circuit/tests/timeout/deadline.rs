use std::time::Duration;

use http::Method;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit::timeout::{Deadline, DeadlineLayer, Elapsed, Fixed, RequestTimeoutLayer};

use crate::{answers_after, hangs, request};

#[tokio::test(start_paused = true)]
async fn the_inner_service_sees_the_deadline() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(answers_after(Duration::ZERO));
    let res = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(res.into_body(), "Some(5000)");
}

#[tokio::test(start_paused = true)]
async fn an_earlier_deadline_on_the_request_wins() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(answers_after(Duration::ZERO));
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    assert_eq!(svc.oneshot(req).await.unwrap().into_body(), "Some(1000)");
}

#[tokio::test(start_paused = true)]
async fn the_budget_ends_the_call_even_with_longer_attempt_timeouts() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(2)))
        .layer(RequestTimeoutLayer::new(Fixed(Duration::from_secs(30))))
        .service(hangs());
    let start = Instant::now();
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().unwrap().is_deadline());
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_shorter_attempt_timeout_still_applies_within_the_budget() {
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(10)))
        .layer(RequestTimeoutLayer::by_method())
        .service(hangs());
    let start = Instant::now();
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert!(!err.downcast_ref::<Elapsed>().unwrap().is_deadline());
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_budget_covers_several_attempts_in_sequence() {
    // Three attempts of up to 3 s each inside a 5 s budget: the second is
    // cut to the 2 s left, and the third never starts.
    let attempt = ServiceBuilder::new()
        .layer(RequestTimeoutLayer::by_method())
        .service(hangs());
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = attempts.clone();
    let retrying = tower::service_fn(move |req: http::Request<()>| {
        let attempt = attempt.clone();
        let count = count.clone();
        async move {
            let deadline = Deadline::of(&req).unwrap();
            let mut last = None;
            for _ in 0..3 {
                if deadline.remaining().is_zero() {
                    break;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                last = Some(attempt.clone().oneshot(request(Method::GET)).await);
            }
            last.unwrap()
        }
    });
    let svc = ServiceBuilder::new()
        .layer(DeadlineLayer::new(Duration::from_secs(5)))
        .service(retrying);
    let start = Instant::now();
    let err = svc.oneshot(request(Method::GET)).await.unwrap_err();
    assert!(err.downcast_ref::<Elapsed>().unwrap().is_deadline());
    assert_eq!(start.elapsed(), Duration::from_secs(5));
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
}
