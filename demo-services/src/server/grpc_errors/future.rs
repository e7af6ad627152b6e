use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Body;
use axum::http::response::Parts;
use axum::http::{Response, StatusCode};
use bytes::Bytes;
use http_body::Body as _;
use pin_project_lite::pin_project;
use tower::BoxError;

use super::{MAX_BODY_READ, grpc_code, is_grpc, message_of, trailers_only};

pin_project! {
    /// The inner answer, as it was or made gRPC: first the inner service's
    /// response, then, for a refusal to translate, its (small) body for
    /// the message.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        grpc: bool,
        reading: Option<Reading>,
    }
}

/// A refusal whose JSON body is being read for its message.
struct Reading {
    head: Parts,
    body: Body,
    read: Vec<u8>,
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, grpc: bool) -> Self {
        ResponseFuture {
            inner,
            grpc,
            reading: None,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("grpc", &self.grpc)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if this.reading.is_none() {
            let res = ready!(this.inner.poll(cx))?;
            if !*this.grpc || is_grpc(res.headers()) {
                return Poll::Ready(Ok(res.map(Body::new)));
            }
            let (head, body) = res.into_parts();
            // Only a refusal's own small JSON body is read: a body that
            // does not promise to be short (a stream) is left unread.
            let worth_reading = (head.status.is_client_error() || head.status.is_server_error())
                && is_json(&head)
                && body
                    .size_hint()
                    .upper()
                    .is_some_and(|n| n <= MAX_BODY_READ as u64);
            if !worth_reading {
                return Poll::Ready(Ok(translate(head, None)));
            }
            *this.reading = Some(Reading {
                head,
                body: Body::new(body),
                read: Vec::new(),
            });
        }
        let Some(reading) = this.reading.as_mut() else {
            unreachable!("set above")
        };
        loop {
            match ready!(Pin::new(&mut reading.body).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        // The size hint was a promise, not a proof.
                        if reading.read.len() + data.len() > MAX_BODY_READ {
                            break;
                        }
                        reading.read.extend_from_slice(&data);
                    }
                }
                Some(Err(_)) => break,
                None => {
                    let Reading { head, read, .. } = this.reading.take().expect("reading");
                    return Poll::Ready(Ok(translate(head, Some(&read))));
                }
            }
        }
        // Too long or broken: the status's name will do.
        let Reading { head, .. } = this.reading.take().expect("reading");
        Poll::Ready(Ok(translate(head, None)))
    }
}

fn is_json(head: &Parts) -> bool {
    head.headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn translate(head: Parts, body: Option<&[u8]>) -> Response<Body> {
    let status: StatusCode = head.status;
    let message = message_of(status, body);
    trailers_only(head, grpc_code(status), &message)
}
