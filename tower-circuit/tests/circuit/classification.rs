use http::{Request, Response, StatusCode};
use tower::Layer;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{CircuitBreaker, CircuitBreakerLayer, CircuitState};
use tower_circuit::classify::{ErrorsAsFailures, HttpClassifier, IgnoreErrors};
use tower_circuit::keyed::{KeyedBreakers, KeyedCircuitBreakerLayer};
use tower_http::classify::StatusInRangeAsFailures;

use crate::support::*;

/// An HTTP service that answers with the status in the request's path
/// (`/503`), or fails with a transport error for `/error`.
fn http_service()
-> impl Service<Request<()>, Response = Response<()>, Error = BoxError, Future: Send> + Clone {
    service_fn(|req: Request<()>| async move {
        let path = req.uri().path().trim_start_matches('/');
        if path == "error" {
            return Err::<_, BoxError>("connection reset".into());
        }
        let status = StatusCode::from_u16(path.parse().unwrap()).unwrap();
        Ok(Response::builder().status(status).body(()).unwrap())
    })
}

async fn send<S>(svc: &mut S, path: &str, n: usize)
where
    S: Service<Request<()>, Response = Response<()>, Error = BoxError>,
{
    for _ in 0..n {
        let req = Request::get(format!("http://upstream{path}"))
            .body(())
            .unwrap();
        let _ = svc.ready().await.unwrap().call(req).await;
    }
}

#[tokio::test(start_paused = true)]
async fn layer_counts_5xx_as_failures() {
    let b = breaker(count_config(10));
    let mut svc = ServiceBuilder::new()
        .layer(b.layer())
        .service(http_service());
    send(&mut svc, "/503", 10).await;
    assert_eq!(b.stats().failures, 10);
    assert_eq!(b.state(), CircuitState::Open);
}

/// The footgun of old: `layer()` counted only `Err`, so over an HTTP client
/// it took every 503 for a success and never opened. Every constructor a
/// user reaches for first classifies HTTP; counting only errors is the
/// explicit `errors_layer()`.
#[tokio::test(start_paused = true)]
async fn the_obvious_constructors_count_a_503_as_a_failure() {
    let b = breaker(count_config(10));
    let mut svc = b.layer().layer(http_service());
    send(&mut svc, "/503", 1).await;
    assert_eq!(b.stats().failures, 1, "Breaker::layer");

    let b = breaker(count_config(10));
    let mut svc = CircuitBreakerLayer::new(b.clone()).layer(http_service());
    send(&mut svc, "/503", 1).await;
    assert_eq!(b.stats().failures, 1, "CircuitBreakerLayer::new");

    let b = breaker(count_config(10));
    let mut svc = CircuitBreaker::new(http_service(), b.clone());
    send(&mut svc, "/503", 1).await;
    assert_eq!(b.stats().failures, 1, "CircuitBreaker::new");

    let breakers = KeyedBreakers::new(tower_circuit::breaker::Breaker::builder("hosts")).unwrap();
    let host = |req: &Request<()>| req.uri().host().unwrap_or("").to_owned();
    let mut svc = KeyedCircuitBreakerLayer::new(breakers.clone(), host).layer(http_service());
    send(&mut svc, "/503", 1).await;
    let stats = breakers.snapshot();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].failures, 1, "KeyedCircuitBreakerLayer::new");
}

#[tokio::test(start_paused = true)]
async fn layer_counts_4xx_as_successes() {
    let b = breaker(count_config(10));
    let mut svc = ServiceBuilder::new()
        .layer(b.layer())
        .service(http_service());
    send(&mut svc, "/404", 5).await;
    send(&mut svc, "/429", 5).await;
    let m = b.stats();
    assert_eq!((m.calls, m.failures), (10, 0));
    assert_eq!(b.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn layer_counts_transport_errors_as_failures() {
    let b = breaker(count_config(10));
    let mut svc = ServiceBuilder::new()
        .layer(b.layer())
        .service(http_service());
    send(&mut svc, "/error", 10).await;
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn errors_layer_counts_only_errors() {
    let b = breaker(count_config(10));
    let mut svc = ServiceBuilder::new()
        .layer(b.errors_layer())
        .service(http_service());
    send(&mut svc, "/503", 10).await;
    assert_eq!(
        b.stats().failures,
        0,
        "a 503 response is an Ok to the errors-only layer"
    );
}

#[tokio::test(start_paused = true)]
async fn any_tower_http_classifier_can_decide() {
    let b = breaker(count_config(10));
    let classifier =
        HttpClassifier::new(StatusInRangeAsFailures::new(400..=599).into_make_classifier());
    let mut svc = ServiceBuilder::new()
        .layer(b.layer().classifier(classifier))
        .service(http_service());
    send(&mut svc, "/404", 10).await;
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn ignored_errors_are_not_counted() {
    let b = breaker(count_config(10));
    let classify = IgnoreErrors::new(ErrorsAsFailures, |e: &BoxError| {
        e.to_string().starts_with("not found")
    });
    let mut svc = ServiceBuilder::new()
        .layer(b.errors_layer().classifier(classify))
        .service(service_fn(|missing: bool| async move {
            if missing {
                Err::<(), BoxError>("not found".into())
            } else {
                Err("broken".into())
            }
        }));
    for _ in 0..20 {
        let _ = svc.ready().await.unwrap().call(true).await;
    }
    assert_eq!(b.stats().calls, 0);
    assert_eq!(b.state(), CircuitState::Closed);
    for _ in 0..10 {
        let _ = svc.ready().await.unwrap().call(false).await;
    }
    assert_eq!(b.state(), CircuitState::Open, "other errors still count");
}
