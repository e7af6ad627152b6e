//! One connection, from its handshake to its close: HTTP/1.1 or HTTP/2
//! through hyper (see [`super::protocol`]), the app as the service, and the
//! deadlines and closes its registry entry calls for.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tower::ServiceExt;
use tower::util::Oneshot;

use super::Limits;
use super::accept::ConnectionInfo;
use super::protocol::{self, Builders};
use super::registry::{Registration, RequestGuard, Status, Tracker};

/// Why a connection is being closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// It has not sent a complete head in time.
    Deadline,
    /// It is closed to make room, or for shutdown, before it sent a
    /// request: nothing is owed to it.
    AtOnce,
}

/// Serves one connection: runs `handshake`, tells HTTP/1.1 from HTTP/2 by
/// its first bytes (the decrypted ones, over TLS), then serves it with
/// `app`, each request carrying what the handshake learned, until
/// the peer leaves, a deadline passes, the registry sheds it, or shutdown
/// (`stop` turning true) closes it.
pub(crate) async fn serve<F, I>(
    handshake: F,
    peer: SocketAddr,
    app: Router,
    builders: Builders,
    limits: Limits,
    registration: Registration,
    mut stop: watch::Receiver<bool>,
) where
    F: Future<Output = io::Result<(I, ConnectionInfo)>> + Send,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stopping = *stop.borrow_and_update();

    // The handshake and the protocol sniff run under the first head's
    // deadline: a peer that sends nothing, or a byte at a time, is closed
    // like one that sends half a head.
    let mut handshake = std::pin::pin!(async move {
        let (io, info) = handshake.await?;
        let (protocol, io) = protocol::sniff(io).await?;
        Ok::<_, io::Error>((protocol, io, info))
    });
    let (protocol, io, info) = loop {
        let status = registration.status();
        if let Some(close) = closing(status, stopping, &limits) {
            log_close(close, peer, &limits);
            return;
        }
        tokio::select! {
            result = &mut handshake => match result {
                Ok(sniffed) => break sniffed,
                Err(e) => {
                    // rustls and io errors can quote what a peer sent.
                    tracing::debug!(%peer, error = %crate::telemetry::Escaped(&e), "handshake failed");
                    return;
                }
            },
            () = sleep_until(deadline(status, &limits).unwrap_or_else(far)) => {}
            () = registration.changed() => {}
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow_and_update();
            }
        }
    };

    let service = AppService {
        app,
        info,
        tracker: registration.tracker().clone(),
    };
    let conn = builders.serve(protocol, io, service);
    let mut conn = std::pin::pin!(conn);
    let mut winding_down = false;
    loop {
        let status = registration.status();
        if let Some(close) = closing(status, stopping, &limits) {
            log_close(close, peer, &limits);
            return;
        }
        if (stopping || status.shed) && !winding_down {
            // It has had a request: let hyper finish what is in flight (or
            // flush the last response; HTTP/2 sends GOAWAY) and close,
            // instead of cutting it.
            conn.as_mut().graceful_shutdown();
            winding_down = true;
        }
        let next = deadline(status, &limits);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(next.unwrap_or_else(far)), if next.is_some() => {}
            () = registration.changed() => {}
            changed = stop.changed(), if !stopping => {
                stopping = changed.is_err() || *stop.borrow_and_update();
            }
        }
    }
}

/// When the connection's wait for a head runs out, if it is waiting.
fn deadline(status: Status, limits: &Limits) -> Option<Instant> {
    let limit = if status.served == 0 {
        limits.header_read_timeout
    } else {
        limits.idle_timeout
    };
    status
        .waiting_since
        .map(|since| since.checked_add(limit).unwrap_or_else(far))
}

/// Whether to close the connection now, without hyper's help.
fn closing(status: Status, stopping: bool, limits: &Limits) -> Option<Close> {
    if deadline(status, limits).is_some_and(|d| d <= Instant::now()) {
        Some(Close::Deadline)
    } else if (status.shed || stopping) && status.served == 0 {
        Some(Close::AtOnce)
    } else {
        None
    }
}

fn log_close(close: Close, peer: SocketAddr, limits: &Limits) {
    match close {
        Close::Deadline => tracing::debug!(
            %peer,
            header_read_timeout = ?limits.header_read_timeout,
            idle_timeout = ?limits.idle_timeout,
            "closing a connection: no complete request head in time"
        ),
        Close::AtOnce => tracing::debug!(%peer, "closing a connection that sent no request"),
    }
}

/// A day from now: the "never" of a deadline that is not running.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(24 * 3600)
}

// === impl AppService ===

/// The app as hyper's service, telling the registry when each request
/// begins (its head is complete) and ends (its response body is done), and
/// giving each request what the connection's handshake learned.
#[derive(Debug, Clone)]
struct AppService {
    app: Router,
    info: ConnectionInfo,
    tracker: Tracker,
}

impl hyper::service::Service<Request<Incoming>> for AppService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = AppFuture;

    fn call(&self, mut req: Request<Incoming>) -> AppFuture {
        self.info.extend(req.extensions_mut());
        let guard = self.tracker.begin_request();
        AppFuture {
            inner: self.app.clone().oneshot(req),
            guard: Some(guard),
        }
    }
}

pin_project_lite::pin_project! {
    /// The app's response, its body carrying the request's guard.
    struct AppFuture {
        #[pin]
        inner: Oneshot<Router, Request<Incoming>>,
        guard: Option<RequestGuard>,
    }
}

impl Future for AppFuture {
    type Output = Result<Response<TrackedBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let guard = this.guard.take();
        Poll::Ready(Ok(response.map(|inner| TrackedBody {
            inner,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its request when hyper drops it, that is
    /// once it is sent (or the connection is gone).
    struct TrackedBody {
        #[pin]
        inner: Body,
        _guard: Option<RequestGuard>,
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
