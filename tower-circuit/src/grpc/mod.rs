//! gRPC: the layers for clients built on tonic (feature `grpc`), and two
//! wire helpers every build has ([`is_grpc`], [`encode_message`]).
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

#[cfg(feature = "grpc")]
pub mod breaker;
#[cfg(feature = "grpc")]
pub mod replay;
#[cfg(feature = "grpc")]
pub mod retry;

#[cfg(feature = "grpc")]
mod classify;
#[cfg(feature = "grpc")]
mod status;
mod wire;

#[cfg(feature = "grpc")]
pub use self::breaker::{GrpcBreakerLayer, GrpcCircuitBreaker};
#[cfg(feature = "grpc")]
pub use self::classify::{ClassifyCode, ServerCodesAsFailures};
#[cfg(feature = "grpc")]
pub use self::status::{MAX_MESSAGE_CHARS, StatusFuture, StatusLayer, StatusService, into_status};
pub use self::wire::{encode_message, is_grpc};
