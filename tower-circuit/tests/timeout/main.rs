//! Behaviour of the timeout and deadline layers, one behaviour per test.
//! All on tokio's paused clock except the round trip through real sockets
//! in `propagation` and `grpc`.

mod deadline;
mod grpc;
#[path = "../support/h2.rs"]
mod h2;
mod propagation;
mod request_timeout;

use std::future::pending;
use std::time::Duration;

use http::{Method, Request, Response};
use tower::util::BoxCloneService;
use tower::{BoxError, service_fn};

/// A service that answers after `delay` (on the paused clock) with the
/// time left on the request's deadline, in ms, as seen by the inner service.
pub(crate) fn answers_after(
    delay: Duration,
) -> BoxCloneService<Request<()>, Response<String>, BoxError> {
    BoxCloneService::new(service_fn(move |req: Request<()>| async move {
        let left = tower_circuit::timeout::Deadline::of(&req).map(|d| d.remaining().as_millis());
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(Response::new(format!("{left:?}")))
    }))
}

/// A service that never answers.
pub(crate) fn hangs() -> BoxCloneService<Request<()>, Response<String>, BoxError> {
    BoxCloneService::new(service_fn(|_req: Request<()>| async {
        pending::<()>().await;
        Ok::<_, BoxError>(Response::new(String::new()))
    }))
}

pub(crate) fn request(method: Method) -> Request<()> {
    Request::builder().method(method).uri("/").body(()).unwrap()
}
