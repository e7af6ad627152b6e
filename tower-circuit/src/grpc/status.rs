//! Our layers' errors as the [`tonic::Status`] a gRPC caller expects.
//!
//! tonic's client turns a service error into a `Status` by looking for a
//! `Status` in it; anything else becomes `UNKNOWN`. So without help an
//! open circuit, a timeout or a refused connection all reach the caller
//! as `UNKNOWN`, and a caller (or its retry policy) cannot tell
//! "try again later" from "this will never work". [`into_status`] gives
//! each its code, and [`StatusLayer`], outermost on a gRPC client stack,
//! does it for every error.

use std::error::Error;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::breaker::CircuitOpen;
use crate::timeout::Elapsed;

/// The longest message [`into_status`] writes from an error's text, in
/// characters: enough for any error this stack makes, small enough for a
/// log line and a `grpc-message` header.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// The `Status` a gRPC caller should see for `error`.
///
/// The first link of the error's source chain that says what happened
/// decides:
///
/// | error | code | message |
/// | --- | --- | --- |
/// | a [`Status`] | its own | its own |
/// | [`CircuitOpen`] | `UNAVAILABLE` | the breaker's name and the time until it lets probes through |
/// | [`Elapsed`] | `DEADLINE_EXCEEDED` | whether the attempt's own timeout or the caller's deadline ran out |
/// | [`std::io::Error`], or a `hyper::Error` not caused by the caller | `UNAVAILABLE` | the transport error |
/// | anything else | `UNKNOWN` | the error's text |
///
/// The original error stays the status's [`source`](Error::source), so a
/// caller can still ask for the cause, e.g. how long the circuit stays
/// open:
///
/// ```
/// use std::error::Error;
/// use tonic::Code;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_circuit::BoxError;
/// use tower_circuit::breaker::{Breaker, CircuitOpen, Config};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let breaker = Breaker::new("user-service", Config::default()).unwrap();
/// breaker.force_open();
/// let svc = ServiceBuilder::new()
///     .layer(breaker.errors_layer())
///     .service(service_fn(|_: ()| async { Ok::<_, BoxError>(()) }));
///
/// let status = tower_circuit::grpc::into_status(svc.oneshot(()).await.unwrap_err());
/// assert_eq!(status.code(), Code::Unavailable);
/// let open = status.source().and_then(|e| e.downcast_ref::<CircuitOpen>()).unwrap();
/// assert_eq!(open.name(), "user-service");
/// # }
/// ```
///
/// Text that becomes a message has its control characters escaped and is
/// cut to [`MAX_MESSAGE_CHARS`]: an error may quote what a peer sent.
pub fn into_status(error: impl Into<BoxError>) -> Status {
    let error: BoxError = error.into();
    let error = match error.downcast::<Status>() {
        Ok(status) => return *status,
        Err(error) => error,
    };
    let mut status = judge(&*error);
    status.set_source(Arc::from(error));
    status
}

/// The status for the first link of `error`'s chain that decides one.
fn judge(error: &(dyn Error + 'static)) -> Status {
    let mut link = Some(error);
    while let Some(current) = link {
        if let Some(status) = current.downcast_ref::<Status>() {
            // `Status` is not `Clone`; its own source stays with it, in
            // the chain kept as the new status's source.
            return Status::with_details_and_metadata(
                status.code(),
                status.message(),
                status.details().to_vec().into(),
                status.metadata().clone(),
            );
        }
        if let Some(open) = current.downcast_ref::<CircuitOpen>() {
            return Status::unavailable(bounded(open));
        }
        if let Some(elapsed) = current.downcast_ref::<Elapsed>() {
            return Status::deadline_exceeded(elapsed_message(elapsed));
        }
        if is_transport(current) {
            return Status::unavailable(transport_message(error, current));
        }
        link = current.source();
    }
    Status::unknown(bounded(error))
}

/// Whether `error` is the connection failing: refused, reset, closed.
fn is_transport(error: &(dyn Error + 'static)) -> bool {
    if error.is::<std::io::Error>() {
        return true;
    }
    // A user error is the request's own (its body failed), not the
    // connection's: keep looking down the chain.
    error
        .downcast_ref::<hyper::Error>()
        .is_some_and(|e| !e.is_user())
}

fn elapsed_message(elapsed: &Elapsed) -> String {
    let ms = elapsed.limit().as_millis();
    if elapsed.is_deadline() {
        format!("the caller's deadline ran out (a budget of {ms} ms)")
    } else {
        format!("the attempt's own timeout of {ms} ms ran out")
    }
}

/// "transport error: ", the outer error's text and, when it is deeper, the
/// link that said it was the transport (hyper-util's outer text alone is
/// "client error (Connect)").
fn transport_message(outer: &(dyn Error + 'static), link: &(dyn Error + 'static)) -> String {
    let mut text = Bounded::default();
    let _ = write!(text, "transport error: {outer}");
    if !std::ptr::addr_eq(outer, link) {
        let _ = write!(text, ": {link}");
    }
    text.0
}

fn bounded(error: impl fmt::Display) -> String {
    let mut text = Bounded::default();
    let _ = write!(text, "{error}");
    text.0
}

/// A string that escapes control characters and stops growing once it
/// holds [`MAX_MESSAGE_CHARS`] characters (an escape is written whole),
/// ending in `…` when cut. Errors are written into
/// it directly, so a huge error text is never copied whole.
#[derive(Default)]
struct Bounded(String, usize);

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.1 >= MAX_MESSAGE_CHARS {
                self.0.push('…');
                // Stop the formatting: the rest would be thrown away.
                return Err(fmt::Error);
            }
            if c.is_control() {
                let escaped = c.escape_default();
                self.1 += escaped.len();
                self.0.extend(escaped);
            } else {
                self.0.push(c);
                self.1 += 1;
            }
        }
        Ok(())
    }
}

/// Turns a service's errors into [`Status`] with [`into_status`]. The
/// layer has no configuration.
///
/// Put it outermost on a gRPC client stack, right under tonic's
/// `Grpc` (or the generated client), so every error of the layers below
/// reaches the caller with its code:
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_circuit::breaker::{Breaker, Config};
/// use tower_circuit::grpc::StatusLayer;
///
/// # fn build<S>(http2_client: S) {
/// let breaker = Breaker::new("user-service", Config::default()).unwrap();
/// let channel = ServiceBuilder::new()
///     .layer(StatusLayer::new())
///     .layer(breaker.grpc_layer())
///     .service(http2_client);
/// # drop(channel);
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusLayer {
    _private: (),
}

impl StatusLayer {
    /// The layer.
    pub fn new() -> Self {
        StatusLayer::default()
    }
}

impl<S> Layer<S> for StatusLayer {
    type Service = StatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StatusService { inner }
    }
}

/// A service whose errors are [`Status`]. Built by [`StatusLayer`].
#[derive(Debug, Clone)]
pub struct StatusService<S> {
    inner: S,
}

impl<S> StatusService<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        StatusService { inner }
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

impl<S, Req> Service<Req> for StatusService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Status;
    type Future = StatusFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(into_status)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        StatusFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// Response future of [`StatusService`].
    #[derive(Debug)]
    pub struct StatusFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, T, E> Future for StatusFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Status>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(ready!(self.project().inner.poll(cx)).map_err(into_status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(bounded("a\nb\u{1b}[31mc"), "a\\nb\\u{1b}[31mc");
    }

    #[test]
    fn long_text_is_cut_at_the_bound() {
        let text = bounded("é".repeat(MAX_MESSAGE_CHARS * 3));
        assert_eq!(text.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(text.ends_with('…'));
        assert_eq!(
            bounded("é".repeat(MAX_MESSAGE_CHARS)).chars().count(),
            MAX_MESSAGE_CHARS
        );
    }
}
