//! Response future of [`Fallback`](super::Fallback).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::{FallbackOn, Shared};
use crate::BoxError;
use crate::breaker::CircuitOpen;

pin_project! {
    /// The inner call; on failure, the fallback's answer.
    pub struct ResponseFuture<F, T, H> {
        #[pin]
        future: F,
        kept: Option<T>,
        shared: Arc<Shared<H>>,
    }
}

impl<F, T, H> ResponseFuture<F, T, H> {
    pub(crate) fn new(future: F, kept: T, shared: Arc<Shared<H>>) -> Self {
        ResponseFuture {
            future,
            kept: Some(kept),
            shared,
        }
    }
}

impl<F, T, H> fmt::Debug for ResponseFuture<F, T, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, T, H, R, E> Future for ResponseFuture<F, T, H>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
    H: Fn(T, &BoxError) -> Option<R>,
{
    type Output = Result<R, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error: BoxError = match ready!(this.future.poll(cx)) {
            Ok(response) => return Poll::Ready(Ok(response)),
            Err(error) => error.into(),
        };
        let circuit_open = error.is::<CircuitOpen>();
        let shared = &**this.shared;
        if !circuit_open && shared.on == FallbackOn::CircuitOpen {
            return Poll::Ready(Err(error));
        }
        let Some(kept) = this.kept.take() else {
            return Poll::Ready(Err(error));
        };
        match (shared.handler)(kept, &error) {
            Some(response) => {
                if let Some(breaker) = &shared.breaker {
                    breaker.fallback_used(circuit_open);
                }
                Poll::Ready(Ok(response))
            }
            None => Poll::Ready(Err(error)),
        }
    }
}
