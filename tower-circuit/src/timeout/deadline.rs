//! Deadlines: the time left for one logical call, across retries and hops.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, sleep_until};
use tower_layer::Layer;
use tower_service::Service;

use super::error::Elapsed;
use super::future::ResponseFuture;
use crate::BoxError;
use crate::saturating::instant_after;

thread_local! {
    /// The deadline of whatever the thread is polling now. A const-initialised
    /// `Cell` rather than `tokio::task_local!`: the deadline is `Copy`, and
    /// setting and restoring a `Cell` around each poll costs a few
    /// nanoseconds where the task-local's `RefCell` swaps cost about 80 per
    /// call (measured when this was chosen; the `deadline` case of
    /// `benches/layers.rs` measures the layer as it is now).
    static CURRENT: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// Restores the previous current deadline when dropped, also on unwind.
struct Restore(Option<Deadline>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

fn enter(deadline: Deadline) -> Restore {
    Restore(CURRENT.with(|c| c.replace(Some(deadline))))
}

pin_project! {
    /// A future run with a [`Deadline`] as the current one, from
    /// [`Deadline::scope`].
    #[derive(Debug)]
    pub struct Scoped<F> {
        #[pin]
        inner: F,
        deadline: Deadline,
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _restore = enter(*this.deadline);
        this.inner.poll(cx)
    }
}

/// The instant by which a logical call must be done.
///
/// Inside a process it travels as the *current* deadline of the task: set
/// by [`DeadlineLayer`] around the call it bounds (client side) and by
/// [`ServerDeadlineLayer`](super::ServerDeadlineLayer) around the handler
/// (server side), so every call made within, at any depth, sees it through
/// [`Deadline::current`] without touching the request. A caller may also
/// put one on a request as an extension; [`Deadline::of`] takes the
/// earlier of the two. Being current costs no allocation, where an
/// extension allocates the request's extension map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(instant_after(Instant::now(), budget))
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
        CURRENT.with(Cell::get)
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

    /// Calls `f` with this deadline as the current one.
    pub fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        let _restore = enter(self);
        f()
    }

    /// Runs `future` with this deadline as the current one.
    pub fn scope<F: Future>(self, future: F) -> Scoped<F> {
        Scoped {
            inner: future,
            deadline: self,
        }
    }
}

/// Gives each logical call a total time budget, across all the attempts
/// made inside it.
///
/// Put it outermost on a client stack (outside retry). It makes the
/// deadline (or an earlier one, from the request or the task) the current
/// one while the inner services are called and polled, so the per-attempt
/// [`RequestTimeout`](super::RequestTimeout) and
/// [`PropagateDeadline`](super::PropagateDeadline) see it, and fails the
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
    type Future = ResponseFuture<Scoped<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // One clock read per call: `Instant::now` is the most expensive
        // step of this layer.
        let now = Instant::now();
        let own = Deadline(instant_after(now, self.budget));
        let deadline = Deadline::of(&req).map_or(own, |earlier| earlier.min(own));
        let left = deadline.instant().saturating_duration_since(now);
        if left.is_zero() {
            return ResponseFuture::expired(Elapsed::deadline(left));
        }
        // Current both while the inner services are called (they read it
        // in `call`) and while their futures run.
        let future = deadline.sync_scope(|| self.inner.call(req));
        ResponseFuture::running(
            deadline.scope(future),
            sleep_until(deadline.instant()),
            Elapsed::deadline(left),
        )
    }
}
