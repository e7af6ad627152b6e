//! Tower layers that keep service-to-service calls safe when the other side
//! fails: a circuit breaker with sliding windows, events, metrics, fallbacks
//! and per-key breakers; per-request timeouts; and deadlines that cross
//! service boundaries.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::breaker::{Breaker, Config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_circuit::BoxError> {
//! let breaker = Breaker::new("inventory", Config::default())?;
//! let service = ServiceBuilder::new()
//!     .layer(breaker.errors_layer())
//!     .service(service_fn(|n: u64| async move { Ok::<_, tower_circuit::BoxError>(n * 2) }));
//!
//! assert_eq!(service.oneshot(21).await?, 42);
//! println!("{:?}", breaker.stats());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`breaker`]: the circuit breaker: [`Breaker`](breaker::Breaker) (the
//!   shared state and its handle), [`CircuitBreakerLayer`](breaker::CircuitBreakerLayer),
//!   configuration, sliding windows, events and metrics.
//! - [`classify`]: what counts as a failure, built on `tower_http::classify`.
//! - [`fallback`]: answers in place of an open circuit or a failed call.
//! - `grpc` (feature `grpc`): the breaker for tonic clients, judging calls
//!   by `grpc-status` in headers and trailers, and the layers' errors as
//!   `tonic::Status`.
//! - [`keyed`]: one breaker per key (per host, per tenant) with bounded
//!   size and idle eviction.
//! - [`registry`]: every breaker of a process, for health and metrics endpoints.
//! - `client` (feature `client`): a JSON client for one service, built from
//!   the recommended stack over `hyper-util`.
//! - [`retry`]: retries with jittered backoff, a budget, idempotency,
//!   `Retry-After` and deadlines.
//! - [`timeout`]: per-request timeouts, total deadlines, and deadline
//!   propagation between services over HTTP.
//!
//! # The recommended client stack
//!
//! Outermost first, the order of .NET's standard resilience handler:
//!
//! 1. [`DeadlineLayer`](timeout::DeadlineLayer): the whole logical call,
//!    retries included, has one budget;
//! 2. [`RetryLayer`](retry::RetryLayer): tries again, inside that budget;
//! 3. the circuit breaker: sees *every attempt*, so a dependency that fails
//!    three times in one call counts three failures; once open, its
//!    `CircuitOpen` reaches retry, which never retries it: an open circuit
//!    fails fast;
//! 4. [`RequestTimeoutLayer`](timeout::RequestTimeoutLayer): each attempt
//!    has its own limit, and a timeout is an error the breaker counts and
//!    retry retries; when the attempt is cut short by the call's deadline
//!    instead (the caller's budget ran out), the breaker ignores it;
//! 5. [`PropagateDeadlineLayer`](timeout::PropagateDeadlineLayer) (and, from
//!    the auth crate, the token): what goes on the wire;
//! 6. the HTTP client.
//!
//! The breaker sits inside retry, so it counts every attempt: what the
//! dependency actually received. Put *outside* retry, it would see one
//! outcome per logical call however many attempts failed, so a call that
//! retried into a failing dependency four times would count once and the
//! circuit would open more slowly; that order's one merit, stopping a call
//! before retry tries at all, holds here too, because retry never retries
//! a `CircuitOpen`.
//!
//! ```
//! use std::time::Duration;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_circuit::BoxError;
//! use tower_circuit::breaker::{Breaker, CircuitOpen, Config, Window};
//! use tower_circuit::retry::{Backoff, RetryLayer};
//! use tower_circuit::timeout::{DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = Breaker::new(
//!     "user-service",
//!     Config::default().window(Window::Count { size: 4 }).minimum_calls(4),
//! )?;
//! let retry = RetryLayer::builder("user-service")
//!     .backoff(Backoff::default().base(Duration::from_millis(100)))
//!     .build()?;
//! let failing_dependency = service_fn(|_req: Request<()>| async {
//!     Ok::<_, BoxError>(Response::builder().status(StatusCode::BAD_GATEWAY).body(()).unwrap())
//! });
//! let client = ServiceBuilder::new()
//!     .layer(DeadlineLayer::new(Duration::from_secs(10)))
//!     .layer(retry.clone())
//!     .layer(breaker.layer())
//!     .layer(RequestTimeoutLayer::by_method())
//!     .layer(PropagateDeadlineLayer::new())
//!     .service(failing_dependency);
//!
//! // One logical call: four attempts, all 502. The breaker saw all four
//! // and opened; retry stopped at the open circuit without a fifth try.
//! let res = client.clone().oneshot(Request::get("/users/7").body(()).unwrap()).await?;
//! assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
//! assert_eq!(breaker.stats().calls, 4);
//! let err = client.oneshot(Request::get("/users/7").body(()).unwrap()).await.unwrap_err();
//! assert!(err.is::<CircuitOpen>());
//! assert_eq!(retry.stats().retries, 3);
//! # Ok(())
//! # }
//! ```
//!
//! All time comes from `tokio::time`, so tests can pause and advance the
//! clock instead of sleeping.

#![forbid(unsafe_code)]

pub mod breaker;
pub mod classify;
#[cfg(feature = "client")]
pub mod client;
pub mod fallback;
pub mod grpc;
pub mod keyed;
pub mod registry;
pub mod retry;
mod saturating;
pub mod timeout;

#[cfg(feature = "serde")]
mod duration_serde;

/// The README's examples, compiled (and, unless marked `no_run`, run) as
/// doc tests, so a snippet a new user copies cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Parses a duration written for people: `"250ms"`, `"1.5s"`, `"30s"`,
/// `"2m"` or `"1h"`, the form configuration files and command lines use.
/// Behind the `serde` feature.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tower_circuit::parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert!(tower_circuit::parse_duration("30").is_err()); // a unit is required
/// ```
#[cfg(feature = "serde")]
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    duration_serde::parse(text)
}

/// The error type of the layers: a boxed error that callers downcast, e.g.
/// `err.is::<CircuitOpen>()`.
///
/// [`CircuitOpen`]: breaker::CircuitOpen
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
