//! Request bodies that can be sent again: tonic's request body is not
//! `Clone`, so the retry layer cannot keep a copy of it. [`ReplayLayer`]
//! collects the body of each call the method table allows to retry (a
//! unary or server-streaming request is one small, finished body) into
//! memory once, bounded, and hands on a [`ReplayBody`] that clones for the
//! price of a reference count.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::retry::GrpcMethods;
use crate::BoxError;

/// The default limit on a buffered request body: 4 MiB, gRPC's usual
/// default limit on a received message.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// A request body larger than the [`ReplayLayer`]'s limit: the call is
/// refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTooLarge {
    limit: usize,
}

impl RequestTooLarge {
    /// The limit, in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

impl fmt::Display for RequestTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body larger than the {} bytes that may be buffered for retries",
            self.limit
        )
    }
}

impl std::error::Error for RequestTooLarge {}

/// The request body failed while it was being buffered: nothing was sent.
#[derive(Debug)]
pub struct BodyError {
    source: BoxError,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body failed while being buffered; nothing was sent")
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// A copy of a request body that was streamed, not buffered, and so cannot
/// be sent again: the copy fails at once rather than send a partial or
/// empty request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReplayable;

impl fmt::Display for NotReplayable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this request body was streamed, not buffered, and cannot be sent again")
    }
}

impl std::error::Error for NotReplayable {}

/// Buffers the request bodies of retryable gRPC methods. See the
/// [module](self) and the stack in [`grpc::retry`](super::retry).
#[derive(Debug, Clone)]
pub struct ReplayLayer {
    methods: GrpcMethods,
    max_body: usize,
}

impl ReplayLayer {
    /// Buffers the bodies of the calls `methods` allows to retry, up to
    /// [`DEFAULT_MAX_BODY`].
    pub fn new(methods: GrpcMethods) -> Self {
        ReplayLayer {
            methods,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// The largest body buffered, in bytes; a larger one fails the call
    /// with [`RequestTooLarge`] without sending it.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for ReplayLayer {
    type Service = Replay<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Replay {
            inner,
            methods: self.methods.clone(),
            max_body: self.max_body,
        }
    }
}

/// Buffers retryable calls' request bodies. Built by [`ReplayLayer`].
#[derive(Debug, Clone)]
pub struct Replay<S> {
    inner: S,
    methods: GrpcMethods,
    max_body: usize,
}

impl<S> Replay<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for Replay<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ReplayFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.methods.may_retry(req.uri().path()) {
            let future = self.inner.call(req.map(ReplayBody::streamed));
            return ReplayFuture {
                state: State::Called { future },
            };
        }
        if req.body().size_hint().lower() > self.max_body as u64 {
            let error = Some(RequestTooLarge {
                limit: self.max_body,
            });
            return ReplayFuture {
                state: State::TooLarge { error },
            };
        }
        // The service that was polled ready is called once the body is in;
        // a clone takes its place here.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let (parts, body) = req.into_parts();
        ReplayFuture {
            state: State::Collecting {
                body,
                head: Some((parts, service)),
                first: None,
                more: None,
                trailers: None,
                limit: self.max_body,
            },
        }
    }
}

pin_project! {
    /// Response future of [`Replay`]: collects the body, then calls.
    pub struct ReplayFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<B, S, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, S, F> {
        Collecting {
            #[pin]
            body: B,
            head: Option<(Parts, S)>,
            // The first chunk, kept as it is: a unary call's body is
            // usually one chunk, and then nothing is copied.
            first: Option<Bytes>,
            more: Option<BytesMut>,
            trailers: Option<HeaderMap>,
            limit: usize,
        },
        Called {
            #[pin]
            future: F,
        },
        TooLarge {
            error: Option<RequestTooLarge>,
        },
    }
}

impl<S, B> fmt::Debug for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayFuture").finish_non_exhaustive()
    }
}

impl<S, B> Future for ReplayFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Collecting {
                    mut body,
                    head,
                    first,
                    more,
                    trailers,
                    limit,
                } => {
                    let Some(frame) = ready!(body.as_mut().poll_frame(cx)) else {
                        let data = match (first.take(), more.take()) {
                            (_, Some(more)) => more.freeze(),
                            (Some(first), None) => first,
                            (None, None) => Bytes::new(),
                        };
                        let body = ReplayBody::buffered(data, trailers.take());
                        let (parts, mut service) = head.take().expect("polled after completion");
                        let future = service.call(Request::from_parts(parts, body));
                        state.set(State::Called { future });
                        continue;
                    };
                    let frame = frame.map_err(|e| BodyError { source: e.into() })?;
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let len = first.as_ref().map_or(0, Bytes::len)
                                + more.as_ref().map_or(0, BytesMut::len);
                            if data.len() > *limit - len.min(*limit) {
                                return Poll::Ready(Err(RequestTooLarge { limit: *limit }.into()));
                            }
                            match (first.is_none(), more.as_mut()) {
                                (true, None) => *first = Some(data),
                                (_, Some(more)) => more.extend_from_slice(&data),
                                (false, None) => {
                                    let mut joined = BytesMut::with_capacity(len + data.len());
                                    joined.extend_from_slice(&first.take().unwrap_or_default());
                                    joined.extend_from_slice(&data);
                                    *more = Some(joined);
                                }
                            }
                            continue;
                        }
                        Err(frame) => frame,
                    };
                    if let Ok(frame_trailers) = frame.into_trailers() {
                        trailers
                            .get_or_insert_with(HeaderMap::new)
                            .extend(frame_trailers);
                    }
                }
                StateProj::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProj::TooLarge { error } => {
                    let error = error.take().expect("polled after completion");
                    return Poll::Ready(Err(error.into()));
                }
            }
        }
    }
}

pin_project! {
    /// The request body [`Replay`] hands on: buffered (a retryable method;
    /// every clone sends the same bytes again) or the caller's own,
    /// streamed as it comes (any other method; a clone of it fails at once
    /// with [`NotReplayable`], never sending a partial or empty request).
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Bytes,
            trailers: Option<HeaderMap>,
            // How far this copy has got: 0 nothing sent, 1 data sent,
            // 2 trailers sent.
            sent: u8,
        },
        Streamed {
            #[pin]
            inner: B,
        },
        Unreplayable {
            failed: bool,
        },
    }
}

impl<B> ReplayBody<B> {
    fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        ReplayBody {
            kind: Kind::Buffered {
                data,
                trailers,
                sent: 0,
            },
        }
    }

    fn streamed(inner: B) -> Self {
        ReplayBody {
            kind: Kind::Streamed { inner },
        }
    }

    /// Whether this body was buffered, and its clones send it again.
    pub fn is_replayable(&self) -> bool {
        matches!(self.kind, Kind::Buffered { .. })
    }
}

impl<B> Clone for ReplayBody<B> {
    fn clone(&self) -> Self {
        match &self.kind {
            Kind::Buffered { data, trailers, .. } => {
                ReplayBody::buffered(data.clone(), trailers.clone())
            }
            Kind::Streamed { .. } | Kind::Unreplayable { .. } => ReplayBody {
                kind: Kind::Unreplayable { failed: false },
            },
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Buffered { data, .. } => {
                return f
                    .debug_struct("ReplayBody")
                    .field("buffered", &data.len())
                    .finish();
            }
            Kind::Streamed { .. } => "streamed",
            Kind::Unreplayable { .. } => "unreplayable",
        };
        f.debug_tuple("ReplayBody").field(&kind).finish()
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Buffered {
                data,
                trailers,
                sent,
            } => {
                if *sent == 0 {
                    *sent = 1;
                    if !data.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(data.clone()))));
                    }
                }
                if *sent == 1 {
                    *sent = 2;
                    if let Some(trailers) = trailers {
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
                    }
                }
                Poll::Ready(None)
            }
            KindProj::Streamed { inner } => inner.poll_frame(cx).map_err(Into::into),
            KindProj::Unreplayable { failed } => {
                if std::mem::replace(failed, true) {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(NotReplayable.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered {
                data,
                trailers,
                sent,
            } => match sent {
                0 => data.is_empty() && trailers.is_none(),
                1 => trailers.is_none(),
                _ => true,
            },
            Kind::Streamed { inner } => inner.is_end_stream(),
            // Not ended before it has failed: a body that claims to be
            // empty would be sent as an empty request.
            Kind::Unreplayable { failed } => *failed,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, sent: 0, .. } => SizeHint::with_exact(data.len() as u64),
            Kind::Buffered { .. } => SizeHint::with_exact(0),
            Kind::Streamed { inner } => inner.size_hint(),
            Kind::Unreplayable { .. } => SizeHint::new(),
        }
    }
}
