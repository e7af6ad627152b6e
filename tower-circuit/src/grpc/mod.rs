//! The layers for gRPC clients built on tonic (feature `grpc`).
//!
//! - [`GrpcBreakerLayer`] ([`Breaker::grpc_layer`]): the circuit breaker,
//!   judging calls by `grpc-status` from the response head or the
//!   trailers, so that `UNAVAILABLE` behind an HTTP `200` counts.
//! - [`into_status`] and [`StatusLayer`]: the layers' errors (an open
//!   circuit, a timeout, a refused connection) as the [`tonic::Status`]
//!   with the right code, not `UNKNOWN`.
//! - [`retry`]: which calls may be retried (a table of methods, streams
//!   never) and what is retried (`UNAVAILABLE`, with the server's
//!   pushback), for the [`RetryLayer`](crate::retry::RetryLayer).
//! - [`replay`]: tonic's request bodies stream and are not `Clone`; the
//!   [`ReplayLayer`](replay::ReplayLayer) reads a retryable call's body
//!   once, bounded, so each attempt sends the same bytes.
//!
//! The deadline layers need no feature: `ServerDeadline` reads
//! `grpc-timeout` and answers gRPC calls in gRPC, and `PropagateDeadline`
//! writes `grpc-timeout` (see [`crate::timeout`]).
//!
//! [`Breaker::grpc_layer`]: crate::breaker::Breaker::grpc_layer

pub mod breaker;
pub mod replay;
pub mod retry;

mod classify;
mod status;

pub use self::breaker::{GrpcBreakerLayer, GrpcCircuitBreaker};
pub use self::classify::{ClassifyCode, ServerCodesAsFailures};
pub use self::status::{MAX_MESSAGE_CHARS, StatusFuture, StatusLayer, StatusService, into_status};
