//! Shared helpers: a service whose outcome the request decides.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower::util::BoxCloneService;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};

/// What a call to the test service does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Ok,
    Fail,
    /// Succeeds after this long (on the paused clock).
    SlowOk(Duration),
}

pub(crate) type TestService = BoxCloneService<Call, &'static str, BoxError>;

/// A count-window config that opens at 50 % over 10 calls.
pub(crate) fn count_config(size: u32) -> Config {
    Config::default()
        .window(Window::Count { size })
        .minimum_calls(10.min(size))
        .failure_rate_threshold(0.5)
        .open_duration(Duration::from_secs(30))
}

pub(crate) fn breaker(config: Config) -> Breaker {
    Breaker::new("test", config).expect("valid config")
}

/// The breaker's layer over a service that does what each request says,
/// counting how often it is reached.
pub(crate) fn service(breaker: &Breaker) -> (TestService, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let inner = service_fn(move |call: Call| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            match call {
                Call::Ok => Ok("ok"),
                Call::Fail => Err::<_, BoxError>("boom".into()),
                Call::SlowOk(d) => {
                    tokio::time::sleep(d).await;
                    Ok("slow")
                }
            }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(breaker.errors_layer())
        .service(inner);
    (BoxCloneService::new(svc), hits)
}

pub(crate) async fn call(svc: &mut TestService, c: Call) -> Result<&'static str, BoxError> {
    svc.ready().await?.call(c).await
}

/// Makes `n` calls of kind `c`, ignoring results.
pub(crate) async fn calls(svc: &mut TestService, c: Call, n: usize) {
    for _ in 0..n {
        let _ = call(svc, c).await;
    }
}

pub(crate) fn is_circuit_open(result: &Result<&'static str, BoxError>) -> bool {
    matches!(result, Err(e) if e.is::<CircuitOpen>())
}

pub(crate) fn hits(h: &AtomicUsize) -> usize {
    h.load(Ordering::SeqCst)
}

/// The next request the mock received. Bounded, so that a request that
/// never comes fails the test at once (the paused clock skips ahead when
/// everything is idle) instead of hanging it.
pub(crate) async fn next_request<Req, Res>(
    handle: &mut tower_test::mock::Handle<Req, Res>,
) -> (Req, tower_test::mock::SendResponse<Res>) {
    tokio::time::timeout(Duration::from_secs(3600), handle.next_request())
        .await
        .expect("the inner service received no request")
        .expect("the mock service was dropped")
}
