//! Three services that call each other through this project's layers: the
//! user service, the order service and the notification service.
//!
//! Each service is a module with a `State`, its `routes(state)`, an
//! `app(state) -> Router` that puts them in the common stack
//! ([`server::stack`]) and a `run(listener, state, app, shutdown)`; the
//! `State`s share one [`server::ServiceState`] pattern, so
//! [`harness::start`] starts any of them on `127.0.0.1:0` for the drill
//! and the tests the same way `main` does on fixed ports:
//!
//! - [`user`]: users in SQLite.
//! - [`order`]: order creation, which fetches the user through the
//!   resilient client ([`order::upstream`]), stores the order together with
//!   a notification record (an outbox) in one transaction, and delivers the
//!   records in the background ([`order::outbox`]).
//! - [`notification`]: notifications, deduplicated by order.
//! - [`broker`]: NATS JetStream between the two (`--notify-via nats`):
//!   the flags, the connection, the stream, the publish as a service.
//!
//! Shared pieces: [`server`] (the server-side layer stack and graceful
//! shutdown), [`auth`] (service names, permissions, key material),
//! [`api`] (JSON errors and extractors), [`proto`] (the gRPC code generated
//! from `proto/user.proto`), [`db`] (SQLite), [`telemetry`]
//! (Prometheus metrics and request ids), [`tls`] (certificates for
//! mutual TLS), [`fault`] (fault injection),
//! [`cli`] (the command line `main` runs) and [`flags`] (its value
//! parsers).

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod db;
pub mod drill;
pub mod fault;
pub mod flags;
pub mod harness;
pub mod notification;
pub mod order;
pub mod proto;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod user;
