//! Response future of [`Retry`](super::Retry).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep};
use tower_service::Service;

use super::classify::{Decision, RetryClassifier};
use super::{Replay, RetryEvent, Shared};
use crate::BoxError;
use crate::saturating::{MAX_WAIT, instant_after, scale};
use crate::timeout::Deadline;

pin_project! {
    /// One logical call: the attempts and the pauses between them.
    pub struct ResponseFuture<S, B, C>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        // What the next attempt sends; `None` when the request may not be
        // sent twice.
        template: Option<Replay<B>>,
        retries: u32,
        previous_delay: Option<Duration>,
        deadline: Option<Deadline>,
        shared: Arc<Shared>,
        classifier: C,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called {
            #[pin]
            future: F,
        },
        Waiting {
            #[pin]
            sleep: Sleep,
        },
        Ready,
    }
}

impl<S, B, C> ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        template: Option<Replay<B>>,
        deadline: Option<Deadline>,
        shared: Arc<Shared>,
        classifier: C,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            service,
            template,
            retries: 0,
            previous_delay: None,
            deadline,
            shared,
            classifier,
        }
    }
}

impl<S, B, C> std::fmt::Debug for ResponseFuture<S, B, C>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<S, B, C, ResB> Future for ResponseFuture<S, B, C>
where
    S: Service<Request<B>, Response = Response<ResB>>,
    S::Error: Into<BoxError>,
    B: Clone,
    C: RetryClassifier<ResB>,
{
    type Output = Result<Response<ResB>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    if this.template.is_none() {
                        return Poll::Ready(result);
                    }
                    let Decision::Retry { reason, not_before } =
                        this.classifier.classify(result.as_ref())
                    else {
                        return Poll::Ready(result);
                    };
                    let shared = &**this.shared;
                    if *this.retries >= shared.max_retries {
                        return Poll::Ready(result);
                    }
                    let Some(delay) =
                        next_delay(shared, *this.retries, *this.previous_delay, not_before)
                    else {
                        tracing::info!(
                            target: "tower_circuit::retry",
                            retry = &*shared.name,
                            reason = %reason,
                            "not retrying: Retry-After is longer than the cap"
                        );
                        return Poll::Ready(result);
                    };
                    if let Some(deadline) = this.deadline
                        && instant_after(Instant::now(), delay) >= deadline.instant()
                    {
                        tracing::info!(
                            target: "tower_circuit::retry",
                            retry = &*shared.name,
                            reason = %reason,
                            delay_ms = delay.as_millis() as u64,
                            "not retrying: the deadline would pass first"
                        );
                        return Poll::Ready(result);
                    }
                    if let Some(budget) = &shared.budget
                        && !budget.withdraw()
                    {
                        shared.budget_exhausted.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            target: "tower_circuit::retry",
                            retry = &*shared.name,
                            reason = %reason,
                            "retry budget exhausted: not retrying"
                        );
                        return Poll::Ready(result);
                    }
                    *this.retries += 1;
                    *this.previous_delay = Some(delay);
                    shared.report(&RetryEvent {
                        name: shared.name.clone(),
                        attempt: *this.retries + 1,
                        delay,
                        reason,
                    });
                    this.state.set(State::Waiting {
                        sleep: sleep(delay),
                    });
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Ready);
                }
                StateProj::Ready => {
                    ready!(this.service.poll_ready(cx)).map_err(Into::into)?;
                    let req = this.template.as_ref().expect("checked above").request();
                    let future = this.service.call(req);
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

/// The delay before retry `n`, or `None` when the server asks for a longer
/// wait than the layer allows.
fn next_delay(
    shared: &Shared,
    n: u32,
    previous: Option<Duration>,
    not_before: Option<Duration>,
) -> Option<Duration> {
    match not_before {
        None => Some(shared.backoff.delay(n, previous)),
        // Beyond the cap, or beyond what a timer can wait (tokio clamps a
        // sleep to about 30 years): waiting less than asked is not allowed.
        Some(asked) if asked > shared.max_retry_after || asked > MAX_WAIT => None,
        // Never sooner than asked; a little jitter above it, so that the
        // clients the server turned away do not all come back at once.
        Some(asked) => {
            Some(asked.saturating_add(scale(shared.backoff.base, shared.backoff.random.unit())))
        }
    }
}
