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
//!     .layer(breaker.layer())
//!     .service(service_fn(|n: u64| async move { Ok::<_, tower_circuit::BoxError>(n * 2) }));
//!
//! assert_eq!(service.oneshot(21).await?, 42);
//! println!("{:?}", breaker.metrics());
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
//! - [`keyed`]: one breaker per key (per host, per tenant) with bounded
//!   size and idle eviction.
//! - [`registry`]: every breaker of a process, for health and metrics endpoints.
//! - [`timeout`]: per-request timeouts, total deadlines, and deadline
//!   propagation between services over HTTP.
//!
//! All time comes from `tokio::time`, so tests can pause and advance the
//! clock instead of sleeping.

#![forbid(unsafe_code)]

pub mod breaker;
pub mod classify;
pub mod fallback;
pub mod keyed;
pub mod registry;
pub mod retry;
pub mod timeout;

#[cfg(feature = "serde")]
mod duration_serde;

/// The error type of the layers: a boxed error that callers downcast, e.g.
/// `err.is::<CircuitOpen>()`.
///
/// [`CircuitOpen`]: breaker::CircuitOpen
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
