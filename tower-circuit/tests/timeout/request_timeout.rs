use std::time::Duration;

use http::Method;
use tokio::time::Instant;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_circuit::breaker::{Breaker, CircuitState, Config, Window};
use tower_circuit::timeout::{ByMethod, Deadline, Elapsed, Fixed, RequestTimeoutLayer};

use crate::{answers_after, hangs, request};

/// Sends `method` through a `ByMethod` timeout over a hanging service and
/// returns how long it took and the error.
async fn time_out(policy: ByMethod, method: Method) -> (Duration, Elapsed) {
    let svc = RequestTimeoutLayer::new(policy).layer(hangs());
    let start = Instant::now();
    let err = svc.oneshot(request(method)).await.unwrap_err();
    let elapsed = err
        .downcast_ref::<Elapsed>()
        .expect("an Elapsed error")
        .clone();
    (start.elapsed(), elapsed)
}

#[tokio::test(start_paused = true)]
async fn reads_default_to_three_seconds() {
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        let (took, err) = time_out(ByMethod::default(), method.clone()).await;
        assert_eq!(
            (took, err.limit()),
            (Duration::from_secs(3), Duration::from_secs(3)),
            "{method}"
        );
        assert!(!err.is_deadline());
    }
}

#[tokio::test(start_paused = true)]
async fn writes_default_to_ten_seconds() {
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (took, _) = time_out(ByMethod::default(), method.clone()).await;
        assert_eq!(took, Duration::from_secs(10), "{method}");
    }
}

#[tokio::test(start_paused = true)]
async fn methods_and_groups_can_be_configured() {
    let policy = ByMethod::default()
        .reads(Duration::from_secs(1))
        .writes(Duration::from_secs(20))
        .method(Method::DELETE, Duration::from_secs(60));
    assert_eq!(
        time_out(policy.clone(), Method::GET).await.0,
        Duration::from_secs(1)
    );
    assert_eq!(
        time_out(policy.clone(), Method::POST).await.0,
        Duration::from_secs(20)
    );
    assert_eq!(
        time_out(policy, Method::DELETE).await.0,
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn a_closure_can_choose_the_timeout() {
    let by_path = |req: &http::Request<()>| {
        if req.uri().path() == "/" {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        }
    };
    let svc = RequestTimeoutLayer::new(by_path).layer(hangs());
    let start = Instant::now();
    assert!(svc.oneshot(request(Method::GET)).await.is_err());
    assert_eq!(start.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_response_in_time_passes_through() {
    let svc = RequestTimeoutLayer::new(Fixed(Duration::from_secs(1)))
        .layer(answers_after(Duration::from_millis(999)));
    let res = svc.oneshot(request(Method::GET)).await.unwrap();
    assert_eq!(res.into_body(), "None", "no deadline was set");
}

#[tokio::test(start_paused = true)]
async fn a_nearer_deadline_shortens_the_timeout() {
    let svc = RequestTimeoutLayer::by_method().layer(hangs());
    let mut req = request(Method::GET);
    req.extensions_mut()
        .insert(Deadline::after(Duration::from_secs(1)));
    let start = Instant::now();
    let err = svc.oneshot(req).await.unwrap_err();
    let err = err.downcast_ref::<Elapsed>().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(1));
    assert!(err.is_deadline());
    assert_eq!(
        err.to_string(),
        "deadline exceeded: the call's budget of 1000 ms ran out"
    );
}

#[tokio::test(start_paused = true)]
async fn the_current_tasks_deadline_bounds_the_call() {
    let svc = RequestTimeoutLayer::by_method().layer(hangs());
    let start = Instant::now();
    let result = Deadline::after(Duration::from_millis(400))
        .scope(svc.oneshot(request(Method::GET)))
        .await;
    assert!(
        result
            .unwrap_err()
            .downcast_ref::<Elapsed>()
            .unwrap()
            .is_deadline()
    );
    assert_eq!(start.elapsed(), Duration::from_millis(400));
}

#[tokio::test(start_paused = true)]
async fn a_passed_deadline_fails_without_calling_the_service() {
    let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = called.clone();
    let inner = tower::service_fn(move |_req: http::Request<()>| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, tower::BoxError>(()) }
    });
    let svc = RequestTimeoutLayer::by_method().layer(inner);
    let mut req = request(Method::GET);
    req.extensions_mut().insert(Deadline::at(Instant::now()));
    assert!(svc.oneshot(req).await.unwrap_err().is::<Elapsed>());
    assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn timeouts_count_as_breaker_failures() {
    let breaker = Breaker::new(
        "slow",
        Config::default()
            .window(Window::Count { size: 5 })
            .minimum_calls(5),
    )
    .unwrap();
    let svc = ServiceBuilder::new()
        .layer(breaker.layer())
        .layer(RequestTimeoutLayer::by_method())
        .service(hangs());
    for _ in 0..5 {
        assert!(
            svc.clone()
                .oneshot(request(Method::GET))
                .await
                .unwrap_err()
                .is::<Elapsed>()
        );
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}
