//! The response body of [`ServerDeadline`](super::ServerDeadline): the
//! handler's, bounded by the deadline when it is a gRPC stream, or an
//! answer the layer made itself.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::HeaderValue;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use super::error::Elapsed;
use super::propagate::BUDGET_HEADER;

/// `grpc-status` and `grpc-message`, the gRPC status of an answer, in its
/// headers (trailers-only) or its trailers.
pub(crate) const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");
pub(crate) const GRPC_MESSAGE: http::HeaderName = http::HeaderName::from_static("grpc-message");

/// `DEADLINE_EXCEEDED`.
pub(crate) const DEADLINE_EXCEEDED: HeaderValue = HeaderValue::from_static("4");

pin_project! {
    /// Response body of [`ServerDeadline`](super::ServerDeadline).
    ///
    /// For a gRPC call whose handler answered in time, the handler's body
    /// still runs under the deadline: when it passes mid-stream, the
    /// handler's body is dropped (which cancels whatever produces the
    /// stream) and this body ends with the trailers `grpc-status: 4`
    /// (`DEADLINE_EXCEEDED`), a `grpc-message`, and `x-request-budget-ms: 0`
    /// when the budget was the caller's. Trailers the handler sends in time
    /// pass through unchanged. A REST body passes through unbounded, as
    /// before: the deadline covers the handler until it answers, and a
    /// REST client reading slowly is its own business.
    #[derive(Debug)]
    pub struct DeadlineBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        // REST: the handler's body as it is.
        Inner {
            #[pin]
            inner: B,
        },
        // gRPC: the handler's body until the deadline.
        Bounded {
            #[pin]
            inner: B,
            #[pin]
            sleep: Sleep,
            budget: Duration,
            callers: bool,
        },
        // The layer's own answer (a JSON error, or nothing for a gRPC
        // trailers-only answer), or a bounded body once it has ended.
        Full {
            data: Option<Bytes>,
        },
    }
}

impl<B> DeadlineBody<B> {
    /// The handler's body, passed through.
    pub(crate) fn inner(inner: B) -> Self {
        DeadlineBody {
            kind: Kind::Inner { inner },
        }
    }

    /// The handler's body, ended with `DEADLINE_EXCEEDED` trailers at
    /// `deadline`.
    pub(crate) fn bounded(inner: B, deadline: Instant, budget: Duration, callers: bool) -> Self {
        DeadlineBody {
            kind: Kind::Bounded {
                inner,
                sleep: sleep_until(deadline),
                budget,
                callers,
            },
        }
    }

    /// A body of the layer's own.
    pub(crate) fn full(data: Option<Bytes>) -> Self {
        DeadlineBody {
            kind: Kind::Full { data },
        }
    }
}

/// Writes a gRPC status into `headers`: `grpc-status`, `grpc-message`
/// (percent-encoded as the spec asks), and the budget marker when the
/// caller's budget, not this server's own limit, ran out.
pub(crate) fn put_grpc_status(
    headers: &mut HeaderMap,
    code: HeaderValue,
    message: &str,
    callers: bool,
) {
    headers.insert(GRPC_STATUS, code);
    if let Ok(message) = HeaderValue::from_str(&crate::grpc::encode_message(message)) {
        headers.insert(GRPC_MESSAGE, message);
    }
    if callers {
        headers.insert(BUDGET_HEADER, HeaderValue::from_static("0"));
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut kind = self.project().kind;
        match kind.as_mut().project() {
            KindProj::Inner { inner } => inner.poll_frame(cx),
            KindProj::Bounded {
                inner,
                sleep,
                budget,
                callers,
            } => {
                if sleep.poll(cx).is_ready() {
                    let (budget, callers) = (*budget, *callers);
                    // Dropping the handler's body now cancels its stream:
                    // nothing more is produced for a caller out of time.
                    kind.set(Kind::Full { data: None });
                    tracing::warn!(
                        budget_ms = budget.as_millis() as u64,
                        "deadline exceeded mid-stream, ending it with DEADLINE_EXCEEDED"
                    );
                    let mut trailers = HeaderMap::with_capacity(3);
                    let message = Elapsed::deadline(budget).to_string();
                    put_grpc_status(&mut trailers, DEADLINE_EXCEEDED, &message, callers);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                let frame = ready!(inner.poll_frame(cx));
                if matches!(&frame, Some(Ok(frame)) if frame.is_trailers()) {
                    // The handler's status, in time: the last frame, after
                    // which the deadline no longer matters.
                    kind.set(Kind::Full { data: None });
                }
                Poll::Ready(frame)
            }
            KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { inner } | Kind::Bounded { inner, .. } => inner.is_end_stream(),
            Kind::Full { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { inner } => inner.size_hint(),
            // It may end early: only the upper bound still holds.
            Kind::Bounded { inner, .. } => {
                let mut hint = SizeHint::new();
                if let Some(upper) = inner.size_hint().upper() {
                    hint.set_upper(upper);
                }
                hint
            }
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
