//! Behaviour of the circuit breaker, one behaviour per test.
//!
//! Every test runs on tokio's paused clock: time moves only when a test
//! advances it, so nothing here sleeps for real.

#[path = "../support/logs.rs"]
mod logs;
mod support;

mod backoff;
mod cancellation;
mod classification;
mod config;
mod events;
mod fallback;
mod handle;
mod hardening;
mod keyed;
mod slow_calls;
mod states;
mod tower_compat;
mod windows;
