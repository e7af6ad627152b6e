//! Response future of [`CircuitBreaker`](super::CircuitBreaker).

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::error::CircuitOpen;
use super::guard::CallGuard;
use crate::BoxError;
use crate::classify::{Classifier, Outcome};
use crate::timeout::Elapsed;

pin_project! {
    /// The response future of [`CircuitBreaker`](super::CircuitBreaker):
    /// either the inner call, whose outcome it records when it finishes, or
    /// an immediate rejection.
    ///
    /// Rejection happens here rather than in `poll_ready`, so a breaker
    /// under axum or `tower::buffer` answers each call with an error
    /// instead of failing the service as a whole.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            call: Option<(CallGuard, C)>,
        },
        Rejected {
            error: Option<BoxError>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, guard: CallGuard, classifier: C) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                call: Some((guard, classifier)),
            },
        }
    }

    pub(crate) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Rejected {
                error: Some(Box::new(error)),
            },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError> + 'static,
    C: Classifier<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, call } => {
                let result = ready!(future.poll(cx));
                if let Some((guard, classifier)) = call.take() {
                    let outcome = match &result {
                        Err(e) if cut_by_deadline(e) => Outcome::Ignored,
                        _ => classifier.classify(result.as_ref()),
                    };
                    guard.finish(outcome);
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(error))
            }
        }
    }
}

/// Whether the call failed because the caller's deadline ran out, which
/// says nothing about the dependency's health (see the module docs). The
/// error is an [`Elapsed`] itself or, as the layers return it, boxed.
/// Shared with the gRPC breaker, which applies the same rule.
pub(crate) fn cut_by_deadline<E: 'static>(error: &E) -> bool {
    let error: &dyn Any = error;
    if let Some(elapsed) = error.downcast_ref::<Elapsed>() {
        return elapsed.is_deadline();
    }
    error
        .downcast_ref::<BoxError>()
        .and_then(|boxed| boxed.downcast_ref::<Elapsed>())
        .is_some_and(Elapsed::is_deadline)
}
