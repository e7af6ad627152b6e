//! Response future of [`ApiKey`](super::ApiKey).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

pin_project! {
    /// Response future of [`ApiKey`](super::ApiKey): the handler's, or the
    /// `401` given without calling it.
    #[derive(Debug)]
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F, B> {
        Called {
            #[pin]
            inner: F,
        },
        Rejected {
            res: Option<Response<B>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn called(inner: F) -> Self {
        ResponseFuture {
            kind: Kind::Called { inner },
        }
    }

    pub(super) fn rejected(res: Response<B>) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { res: Some(res) },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { inner } => inner.poll(cx),
            KindProj::Rejected { res } => {
                Poll::Ready(Ok(res.take().expect("polled after completion")))
            }
        }
    }
}
