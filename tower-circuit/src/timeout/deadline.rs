//! Deadlines: the time left for one logical call, across retries and hops.

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::futures::TaskLocalFuture;
use tokio::time::{Instant, sleep_until};
use tower_layer::Layer;
use tower_service::Service;

use super::error::Elapsed;
use super::future::ResponseFuture;
use crate::BoxError;

tokio::task_local! {
    static CURRENT: Deadline;
}

/// The instant by which a logical call must be done.
///
/// It travels in two ways inside a process: as an extension of the
/// outbound `http::Request` (set by [`DeadlineLayer`]), and as the deadline
/// of the request a server is handling (set by
/// [`ServerDeadlineLayer`](super::ServerDeadlineLayer) for the handler's
/// task), so that calls a handler makes are bounded by its caller's
/// deadline. [`Deadline::of`] takes the earlier of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(Instant::now() + budget)
    }

    /// The instant itself.
    pub fn instant(self) -> Instant {
        self.0
    }

    /// Time left, zero once passed.
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// The deadline of the request the current task is handling, if a
    /// [`ServerDeadlineLayer`](super::ServerDeadlineLayer) (or
    /// [`Deadline::scope`]) set one.
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(|d| *d).ok()
    }

    /// The deadline that bounds `req`: the earlier of its extension and the
    /// current task's deadline.
    pub fn of<B>(req: &http::Request<B>) -> Option<Deadline> {
        let own = req.extensions().get::<Deadline>().copied();
        match (own, Deadline::current()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs `future` with this deadline as the current one.
    pub fn scope<F: Future>(self, future: F) -> TaskLocalFuture<Deadline, F> {
        CURRENT.scope(self, future)
    }
}

/// Gives each logical call a total time budget, across all the attempts
/// made inside it.
///
/// Put it outermost on a client stack (outside retry). It sets the request's
/// [`Deadline`] extension (or keeps an earlier one, from the request or the
/// task), which the per-attempt [`RequestTimeout`](super::RequestTimeout)
/// and [`PropagateDeadline`](super::PropagateDeadline) read, and fails the
/// call with [`Elapsed`] (`is_deadline() == true`) once the budget is spent.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    budget: Duration,
}

impl DeadlineLayer {
    /// A budget of `budget` per logical call.
    pub fn new(budget: Duration) -> Self {
        DeadlineLayer { budget }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = WithDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WithDeadline {
            inner,
            budget: self.budget,
        }
    }
}

/// Bounds each call by a total budget. Built by [`DeadlineLayer`].
#[derive(Debug, Clone)]
pub struct WithDeadline<S> {
    inner: S,
    budget: Duration,
}

impl<S> WithDeadline<S> {
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

impl<S, B> Service<http::Request<B>> for WithDeadline<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let own = Deadline::after(self.budget);
        let deadline = Deadline::of(&req).map_or(own, |earlier| earlier.min(own));
        let left = deadline.remaining();
        if left.is_zero() {
            return ResponseFuture::expired(Elapsed::deadline(self.budget.min(left)));
        }
        req.extensions_mut().insert(deadline);
        ResponseFuture::running(
            self.inner.call(req),
            sleep_until(deadline.instant()),
            Elapsed::deadline(left),
        )
    }
}
