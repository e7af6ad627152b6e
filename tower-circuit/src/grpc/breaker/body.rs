//! The response body of [`GrpcCircuitBreaker`](super::GrpcCircuitBreaker),
//! and the call it carries until the trailers decide its outcome.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::breaker::future::cut_by_deadline;
use crate::breaker::guard::CallGuard;
use crate::classify::Outcome;
use crate::grpc::ClassifyCode;
use crate::grpc::classify::{budget_spent_mark, code_for_http_status, outcome, status_code};

/// A call admitted by the breaker whose outcome is not known yet.
#[derive(Debug)]
pub(super) struct Pending<C> {
    guard: CallGuard,
    classifier: C,
    /// The request went out with a deadline, so the server's "your budget
    /// ran out" mark can be about it.
    had_deadline: bool,
}

impl<C> Pending<C> {
    /// Records `outcome`.
    pub(super) fn finish(self, outcome: Outcome) {
        self.guard.finish(outcome);
    }
}

impl<C: ClassifyCode> Pending<C> {
    pub(super) fn new(guard: CallGuard, classifier: C, had_deadline: bool) -> Self {
        Pending {
            guard,
            classifier,
            had_deadline,
        }
    }

    /// Judges the response head: returns the call still pending when only
    /// the trailers can tell.
    pub(super) fn head(self, status: StatusCode, headers: &HeaderMap) -> Option<InBody<C>> {
        let budget_spent = self.had_deadline && budget_spent_mark(headers);
        // A `grpc-status` in the head is a trailers-only answer: final, whatever the HTTP status.
        if let Some(code) = status_code(headers) {
            let outcome = outcome(&self.classifier, code, budget_spent);
            self.guard.finish(outcome);
            return None;
        }
        if status != StatusCode::OK {
            // Not from a gRPC server, or not from it alone: a proxy's
            // 502, a bare 404. gRPC's own mapping says what it means.
            let outcome = self.classifier.classify(code_for_http_status(status));
            self.guard.finish(outcome);
            return None;
        }
        Some(InBody {
            pending: self,
            budget_spent,
        })
    }
}

/// A call whose status is in the trailers, still to come.
#[derive(Debug)]
pub(super) struct InBody<C> {
    pending: Pending<C>,
    /// The head already carried the server's mark that the caller's
    /// budget ran out.
    budget_spent: bool,
}

impl<C: ClassifyCode> InBody<C> {
    fn trailers(self, trailers: &HeaderMap) {
        let Pending {
            guard,
            classifier,
            had_deadline,
        } = self.pending;
        let spent = self.budget_spent || (had_deadline && budget_spent_mark(trailers));
        let outcome = match status_code(trailers) {
            Some(code) => outcome(&classifier, code, spent),
            // Trailers without a status break the protocol.
            None => Outcome::Failure,
        };
        guard.finish(outcome);
    }
}

pin_project! {
    /// The response body of [`GrpcCircuitBreaker`](super::GrpcCircuitBreaker):
    /// the inner body, frame for frame, recording the call's outcome when
    /// its end decides it.
    ///
    /// - trailers with `grpc-status`: classified;
    /// - trailers without it, or the end of the body without trailers: a
    ///   failure (the server broke the protocol);
    /// - an error mid-stream: a failure (ignored when it is the caller's
    ///   deadline cutting the stream);
    /// - dropped before its end: nothing is recorded, and a half-open
    ///   probe slot is given back. The caller stopped reading, which says
    ///   nothing about the server.
    ///
    /// When the response head already decided the outcome, the body only
    /// passes the frames through.
    #[derive(Debug)]
    pub struct ResponseBody<B, C> {
        #[pin]
        inner: B,
        call: Option<InBody<C>>,
    }
}

impl<B, C> ResponseBody<B, C> {
    pub(super) fn new(inner: B, call: Option<InBody<C>>) -> Self {
        ResponseBody { inner, call }
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }

    /// The inner body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    /// The inner body. Its outcome, if still to come, is not recorded.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B, C> Body for ResponseBody<B, C>
where
    B: Body,
    B::Error: 'static,
    C: ClassifyCode,
{
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if this.call.is_some() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && let Some(call) = this.call.take()
                    {
                        call.trailers(trailers);
                    }
                }
                Some(Err(error)) => {
                    if let Some(call) = this.call.take() {
                        let outcome = if cut_by_deadline(error) {
                            Outcome::Ignored
                        } else {
                            Outcome::Failure
                        };
                        call.pending.guard.finish(outcome);
                    }
                }
                None => {
                    if let Some(call) = this.call.take() {
                        call.pending.guard.finish(Outcome::Failure);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // While the status is still to come, say "not yet": a reader that
        // trusts the hint then polls once more and the breaker learns
        // that the body ended without a status.
        self.call.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
