//! Response future of [`RequestTimeout`](super::RequestTimeout) and
//! [`WithDeadline`](super::WithDeadline).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

use super::error::Elapsed;
use crate::BoxError;

pin_project! {
    /// The inner call, raced against a timer; or an immediate [`Elapsed`]
    /// when the deadline had already passed (the inner service is then not
    /// called).
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Running {
            #[pin]
            inner: F,
            #[pin]
            sleep: Sleep,
            error: Option<Elapsed>,
        },
        Expired {
            error: Option<Elapsed>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn running(inner: F, sleep: Sleep, error: Elapsed) -> Self {
        ResponseFuture {
            kind: Kind::Running {
                inner,
                sleep,
                error: Some(error),
            },
        }
    }

    pub(crate) fn expired(error: Elapsed) -> Self {
        ResponseFuture {
            kind: Kind::Expired { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Running {
                inner,
                sleep,
                error,
            } => {
                // The inner call first: a response that is ready when the
                // timer fires still wins.
                if let Poll::Ready(result) = inner.poll(cx) {
                    return Poll::Ready(result.map_err(Into::into));
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(Box::new(take(error)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            KindProj::Expired { error } => Poll::Ready(Err(Box::new(take(error)))),
        }
    }
}

fn take(error: &mut Option<Elapsed>) -> Elapsed {
    error.take().expect("polled after completion")
}
