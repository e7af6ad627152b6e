use std::task::Poll;

use tower::buffer::Buffer;
use tower::{Layer, Service, ServiceExt};
use tower_circuit::breaker::CircuitOpen;
use tower_test::mock;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn poll_ready_forwards_the_inner_readiness() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    let mut svc = tower_test::mock::Spawn::new(b.errors_layer().layer(mock));
    handle.allow(0);
    assert!(svc.poll_ready().is_pending());
    handle.allow(1);
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn open_circuit_does_not_fail_poll_ready() {
    let b = breaker(count_config(10));
    let (mock, mut handle) = mock::pair::<u32, u32>();
    handle.allow(10);
    let mut svc = tower_test::mock::Spawn::new(b.errors_layer().layer(mock));
    b.force_open();
    assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
    let err = svc.call(1).await.unwrap_err();
    assert!(err.is::<CircuitOpen>());
}

#[tokio::test(start_paused = true)]
async fn under_buffer_rejections_fail_calls_not_the_service() {
    let b = breaker(count_config(10));
    let (inner, _) = service(&b);
    let mut svc = Buffer::new(inner, 8);
    b.force_open();
    for _ in 0..20 {
        let err = svc.ready().await.unwrap().call(Call::Ok).await.unwrap_err();
        assert!(err.is::<CircuitOpen>(), "{err}");
    }
    b.reset();
    assert_eq!(
        svc.ready().await.unwrap().call(Call::Ok).await.unwrap(),
        "ok"
    );
}

/// The server-side shape: axum needs infallible services, so the breaker's
/// errors become responses in `HandleErrorLayer`, and an open circuit
/// answers `503` with `Retry-After` from [`CircuitOpen::retry_after`].
#[tokio::test(start_paused = true)]
async fn under_axum_an_open_circuit_answers_503_with_retry_after() {
    use axum::Router;
    use axum::body::Body;
    use axum::error_handling::HandleErrorLayer;
    use axum::http::{Request, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use tower::ServiceBuilder;
    use tower_circuit::BoxError;

    async fn to_response(err: BoxError) -> Response {
        match err.downcast_ref::<CircuitOpen>() {
            Some(open) => {
                let secs = open
                    .retry_after()
                    .map_or(1, |d| d.as_secs_f64().ceil() as u64);
                let retry_after = [(header::RETRY_AFTER, secs.to_string())];
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    retry_after,
                    open.to_string(),
                )
                    .into_response()
            }
            None => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
        }
    }

    let b = breaker(count_config(10));
    let app = Router::new().route("/", get(|| async { "hello" })).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(to_response))
            .layer(b.errors_layer()),
    );
    let get_root = || Request::get("/").body(Body::empty()).unwrap();

    let ok = app.clone().oneshot(get_root()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    b.force_open();
    let rejected = app.clone().oneshot(get_root()).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    b.reset();
    // Trip it for real so the rejection carries a time left.
    let (mut failing, _) = service(&b);
    calls(&mut failing, Call::Fail, 10).await;
    let rejected = app.clone().oneshot(get_root()).await.unwrap();
    assert_eq!(rejected.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(rejected.headers()[header::RETRY_AFTER], "30");
    b.reset();
    let ok = app.oneshot(get_root()).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK, "the router kept serving");
}

/// Every service of the crate hands back the service it wraps, as tower's
/// do: `get_ref`, `get_mut`, `into_inner`.
#[tokio::test(start_paused = true)]
async fn every_service_exposes_its_inner_service() {
    use std::time::Duration;
    use tower_circuit::fallback::FallbackLayer;
    use tower_circuit::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
    use tower_circuit::retry::RetryLayer;
    use tower_circuit::timeout::{
        DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer, ServerDeadlineLayer,
    };

    #[derive(Debug, Clone, PartialEq)]
    struct Inner(u32);

    macro_rules! round_trip {
        ($svc:expr) => {{
            let mut svc = $svc;
            assert_eq!(svc.get_ref(), &Inner(1));
            svc.get_mut().0 = 2;
            assert_eq!(svc.into_inner(), Inner(2));
        }};
    }

    let b = breaker(count_config(10));
    round_trip!(b.layer().layer(Inner(1)));
    let keyed = KeyedBreakers::<u32>::new(tower_circuit::breaker::Breaker::builder("k")).unwrap();
    round_trip!(KeyedCircuitBreakerLayer::new(keyed, |n: &u32| *n).layer(Inner(1)));
    round_trip!(RetryLayer::builder("r").build().unwrap().layer(Inner(1)));
    round_trip!(
        FallbackLayer::new(|n: &u32| *n, |n: u32, _: &tower_circuit::BoxError| Some(n))
            .layer(Inner(1))
    );
    round_trip!(RequestTimeoutLayer::by_method().layer(Inner(1)));
    round_trip!(DeadlineLayer::new(Duration::from_secs(1)).layer(Inner(1)));
    round_trip!(PropagateDeadlineLayer::new().layer(Inner(1)));
    round_trip!(ServerDeadlineLayer::new(Duration::from_secs(1)).layer(Inner(1)));
}
