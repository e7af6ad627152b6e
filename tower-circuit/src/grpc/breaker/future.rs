//! Response future of [`GrpcCircuitBreaker`](super::GrpcCircuitBreaker).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::body::{Pending, ResponseBody};
use crate::BoxError;
use crate::breaker::CircuitOpen;
use crate::breaker::future::cut_by_deadline;
use crate::classify::Outcome;
use crate::grpc::ClassifyCode;

pin_project! {
    /// The response future of [`GrpcCircuitBreaker`](super::GrpcCircuitBreaker):
    /// the inner call, or an immediate rejection with [`CircuitOpen`].
    ///
    /// It records the outcome when the response head decides it (an
    /// error, a trailers-only answer, an HTTP status other than `200`);
    /// otherwise the call moves into the [`ResponseBody`], which records
    /// it when the trailers come.
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
            call: Option<Pending<C>>,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(super) fn called(future: F, call: Pending<C>) -> Self {
        ResponseFuture {
            kind: Kind::Called {
                future,
                call: Some(call),
            },
        }
    }

    pub(super) fn rejected(error: CircuitOpen) -> Self {
        ResponseFuture {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, C, B, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError> + 'static,
    C: ClassifyCode,
{
    type Output = Result<Response<ResponseBody<B, C>>, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, call } => {
                let result = ready!(future.poll(cx));
                let call = call.take();
                match result {
                    Ok(res) => {
                        let call = call.and_then(|call| call.head(res.status(), res.headers()));
                        Poll::Ready(Ok(res.map(|inner| ResponseBody::new(inner, call))))
                    }
                    Err(error) => {
                        if let Some(call) = call {
                            let outcome = if cut_by_deadline(&error) {
                                Outcome::Ignored
                            } else {
                                Outcome::Failure
                            };
                            call.finish(outcome);
                        }
                        Poll::Ready(Err(error.into()))
                    }
                }
            }
            KindProj::Rejected { error } => {
                let error = error.take().expect("polled after completion");
                Poll::Ready(Err(Box::new(error)))
            }
        }
    }
}
