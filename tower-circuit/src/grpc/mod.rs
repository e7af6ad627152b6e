//! The layers for gRPC calls (feature `grpc`): retries with per-method
//! idempotency, and request bodies buffered so attempts can be replayed.

pub mod replay;
pub mod retry;
