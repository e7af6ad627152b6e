//! The layers for gRPC clients built on tonic (feature `grpc`).
//!
//! - [`GrpcBreakerLayer`] ([`Breaker::grpc_layer`]): the circuit breaker,
//!   judging calls by `grpc-status` from the response head or the
//!   trailers, so that `UNAVAILABLE` behind an HTTP `200` counts.
//! - [`into_status`] and [`StatusLayer`]: the layers' errors (an open
//!   circuit, a timeout, a refused connection) as the [`tonic::Status`]
//!   with the right code, not `UNKNOWN`.
//!
//! [`Breaker::grpc_layer`]: crate::breaker::Breaker::grpc_layer

pub mod breaker;

mod classify;
mod status;

pub use self::breaker::{GrpcBreakerLayer, GrpcCircuitBreaker};
pub use self::classify::{ClassifyCode, ServerCodesAsFailures};
pub use self::status::{MAX_MESSAGE_CHARS, StatusFuture, StatusLayer, StatusService, into_status};
