//! Per-request timeouts and deadlines that cross process boundaries.
//!
//! # Why
//!
//! A timeout per attempt is not enough: with retries, a call that allows
//! 3 s per attempt can take four times that, and the service that called
//! it has long given up. A deadline bounds the whole logical call; carried
//! to the next service in a header, it bounds that service's work too, so
//! no hop keeps working for a caller that is gone.
//!
//! - [`RequestTimeout`]: one attempt's limit, chosen per request (by
//!   default 3 s for GET/HEAD, 10 s for writes, see [`ByMethod`]) and never
//!   beyond the request's [`Deadline`]. Fails with [`Elapsed`].
//! - [`DeadlineLayer`]: the total budget of a logical call, across retries.
//! - [`PropagateDeadlineLayer`]: sends the time left to the next service in
//!   [`BUDGET_HEADER`] (`x-request-budget-ms`, relative milliseconds, so
//!   clock skew does not matter).
//!   For a gRPC call it also writes [`GRPC_TIMEOUT_HEADER`] (`grpc-timeout`,
//!   see [`format_grpc_timeout`]).
//! - [`ServerDeadlineLayer`]: reads it (and a gRPC call's `grpc-timeout`) on
//!   the server, bounds the handler by the smaller of its own timeout and
//!   the caller's budget (`504` with a JSON body when it runs out; for a
//!   gRPC call `DEADLINE_EXCEEDED`, also when its response stream is still
//!   going) and makes it the deadline of every call the handler makes.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::BoxError;
//! use tower_circuit::timeout::{DeadlineLayer, Elapsed, PropagateDeadlineLayer, RequestTimeoutLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let client = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(5))) // the whole call
//!     .layer(RequestTimeoutLayer::by_method()) // each attempt
//!     .layer(PropagateDeadlineLayer::new()) // tell the server
//!     .service(service_fn(|req: Request<()>| async move {
//!         let budget = req.headers()["x-request-budget-ms"].to_str()?.to_owned();
//!         tokio::time::sleep(Duration::from_secs(4)).await; // a slow server
//!         Ok::<_, BoxError>(Response::new(budget))
//!     }));
//!
//! // A GET may take 3 s, though the deadline would allow 5.
//! let err = client.oneshot(Request::get("/users/7").body(()).unwrap()).await.unwrap_err();
//! let elapsed = err.downcast_ref::<Elapsed>().unwrap();
//! assert_eq!(elapsed.limit(), Duration::from_secs(3));
//! assert!(!elapsed.is_deadline());
//! # }
//! ```

pub mod error;
pub mod future;

mod body;
mod deadline;
mod grpc_timeout;
mod layer;
mod policy;
mod propagate;
mod server_deadline;

use std::task::{Context, Poll};

use tokio::time::{Instant, sleep_until};
use tower_service::Service;

pub use self::body::DeadlineBody;
pub use self::deadline::{Deadline, DeadlineLayer, Scoped, WithDeadline};
pub use self::error::Elapsed;
pub use self::grpc_timeout::{
    GRPC_TIMEOUT_HEADER, GrpcTimeout, MalformedGrpcTimeout, format_grpc_timeout, parse_grpc_timeout,
};
pub use self::layer::RequestTimeoutLayer;
pub use self::policy::{ByMethod, Fixed, TimeoutPolicy};
pub use self::propagate::{
    BUDGET_HEADER, PropagateDeadline, PropagateDeadlineLayer, PropagateFuture,
};
pub use self::server_deadline::{ServerDeadline, ServerDeadlineLayer, ServerFuture};

use self::future::ResponseFuture;
use crate::BoxError;
use crate::saturating::instant_after;

/// Limits each request to the time its policy gives it, and never beyond
/// its [`Deadline`]. Built by [`RequestTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct RequestTimeout<S, P = ByMethod> {
    inner: S,
    policy: P,
}

impl<S, P> RequestTimeout<S, P> {
    /// Limits `inner` with `policy`.
    pub fn new(inner: S, policy: P) -> Self {
        RequestTimeout { inner, policy }
    }

    /// A reference to the inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// A mutable reference to the inner service.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, P, B> Service<http::Request<B>> for RequestTimeout<S, P>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    P: TimeoutPolicy<http::Request<B>>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let own = self.policy.timeout(&req);
        // One clock read per call, shared by the deadline and the timer.
        let now = Instant::now();
        let left = Deadline::of(&req).map(|d| d.instant().saturating_duration_since(now));
        let (limit, error) = match left {
            Some(left) if left.is_zero() => {
                return ResponseFuture::expired(Elapsed::deadline(left));
            }
            // Clamped to the deadline: when it fires, the caller's budget
            // ran out, not this attempt's limit, and a breaker ignores it.
            Some(left) if left < own => (left, Elapsed::deadline(left)),
            // A tie is the attempt's own limit: it ran out as well, so the
            // dependency really took that long, and a breaker counts it.
            _ => (own, Elapsed::timeout(own)),
        };
        ResponseFuture::running(
            self.inner.call(req),
            sleep_until(instant_after(now, limit)),
            error,
        )
    }
}
