//! Response future of [`SignToken`](super::SignToken).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::{BoxError, Shared};
use crate::jwt::sign::SignError;

pin_project! {
    /// The call; a `401` answer drops the cached token.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            shared: Arc<Shared>,
        },
        Failed {
            error: Option<SignError>,
        },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            kind: Kind::Called { future, shared },
        }
    }

    pub(crate) fn failed(error: SignError) -> Self {
        ResponseFuture {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, shared } => {
                let res = ready!(future.poll(cx)).map_err(Into::into)?;
                if res.status() == StatusCode::UNAUTHORIZED {
                    shared.invalidate();
                }
                Poll::Ready(Ok(res))
            }
            KindProj::Failed { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
