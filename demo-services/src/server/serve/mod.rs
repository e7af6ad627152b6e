//! The serve loop every service runs: accept connections, serve each with
//! hyper's HTTP/1.1 or HTTP/2 (cleartext, prior knowledge: what gRPC
//! clients speak; told apart by the first bytes), and hold every connection
//! to [`Limits`].
//!
//! ```no_run
//! # async fn demo(app: axum::Router) -> std::io::Result<()> {
//! use demo_services::server::serve::{self, Limits};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let limits = Limits::default(); // the cap sized from the descriptor limit
//! serve::serve(listener, app, limits, std::future::pending()).await
//! # }
//! ```
//!
//! Why not `axum::serve`: it has no timer, so a peer that opens a
//! connection and sends nothing, or half a request head, holds a task and a
//! descriptor until it leaves; a thousand of them take every descriptor and
//! new clients get no answer. Here:
//!
//! - A new connection must complete its first request head within
//!   [`Limits::header_read_timeout`] of being accepted (handshake included),
//!   and a kept-alive one its next head within [`Limits::idle_timeout`] of
//!   its last response; otherwise it is closed.
//! - A head over [`Limits::max_head_size`] is answered 431 and the
//!   connection closed; no connection buffers more than that. Over HTTP/2
//!   the same figure bounds each request's header list, a connection runs
//!   at most [`MAX_CONCURRENT_STREAMS`] requests at once, flow control
//!   bounds the request body it can make the server hold (64 KiB a stream,
//!   256 KiB a connection), and a peer that stops answering pings for
//!   20 s is closed. For HTTP/2 "waiting for a head" means having no
//!   request in progress: the same two deadlines apply between streams.
//! - At most [`Limits::max_connections`] are held (sized below the
//!   descriptor limit). When a new one would pass the cap, the connections
//!   that have waited longest for a request head are closed to make room,
//!   so a flood of idle sockets pushes out its own oldest members, never a
//!   request in progress. When every connection is busy, the new one is
//!   closed instead.
//! - An accept error (out of descriptors) sheds the longest-waiting
//!   connection and backs off briefly instead of spinning. Accept errors and
//!   shed or refused connections are logged at most once a second, with a
//!   count.
//! - On shutdown the loop stops accepting; connections that never sent a
//!   whole request are closed at once, idle kept-alive ones too, and
//!   requests in flight get [`Limits::shutdown_grace`] to finish.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinSet;

mod accept;
mod connection;
mod limits;
mod protocol;
mod registry;
mod throttle;

pub use accept::{Accept, ConnectionInfo};
pub use limits::{
    HEADER_READ_TIMEOUT, IDLE_TIMEOUT, InvalidLimits, Limits, MAX_CONNECTIONS_CEILING,
    MAX_HEAD_SIZE, connection_cap, fd_limit,
};
pub use protocol::MAX_CONCURRENT_STREAMS;

use registry::Registry;
use throttle::Throttle;

/// How long the loop pauses after an accept error that is not about one
/// connection (out of descriptors, say) when it could shed a connection:
/// time for that connection's task to close it and free its descriptor.
const ACCEPT_BACKOFF_SHED: Duration = Duration::from_millis(5);

/// The pause after such an error when nothing could be shed: nothing frees
/// a descriptor soon, so retrying fast would only spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on the connections `acceptor` yields, under `limits`, until
/// `shutdown` completes; then stops accepting, closes the connections that
/// have no request in progress, and waits for the others for at most
/// [`Limits::shutdown_grace`].
///
/// Fails at once, with [`io::ErrorKind::InvalidInput`], on limits that
/// cannot be enforced ([`Limits::validate`]).
pub async fn serve<A: Accept>(
    mut acceptor: A,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    limits
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    tracing::debug!(
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        max_head_size = limits.max_head_size,
        max_connections = limits.max_connections,
        "connection limits"
    );
    let registry = Registry::new(limits.max_connections);
    let builders = protocol::Builders::new(&limits);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut shed_log = Throttle::default();
    let mut refused_log = Throttle::default();
    let mut error_log = Throttle::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            accepted = acceptor.accept() => match accepted {
                Ok((conn, peer)) => {
                    // The handshake (not yet started) before admission:
                    // its clock starts no later than the connection's
                    // header read deadline does.
                    let handshake = acceptor.handshake(conn);
                    let admission = registry.admit();
                    if admission.shed > 0
                        && let Some(n) = shed_log.record(admission.shed as u64)
                    {
                        tracing::warn!(
                            shed = n,
                            max_connections = limits.max_connections,
                            "connection cap reached: closed the connections waiting longest for a request"
                        );
                    }
                    let Some(registration) = admission.registration else {
                        if let Some(n) = refused_log.record(1) {
                            tracing::warn!(
                                refused = n,
                                max_connections = limits.max_connections,
                                "connection cap reached and every connection busy: closed new connections"
                            );
                        }
                        continue;
                    };
                    tasks.spawn(connection::serve(
                        handshake,
                        peer,
                        app.clone(),
                        builders.clone(),
                        limits,
                        registration,
                        stop_rx.clone(),
                    ));
                }
                Err(e) if accept::is_connection_error(&e) => {}
                Err(e) => {
                    // Most likely out of descriptors: make room, then wait
                    // a little rather than fail the same way in a loop.
                    let shed = registry.shed_one();
                    if let Some(n) = error_log.record(1) {
                        tracing::error!(error = %e, errors = n, shed, "accepting a connection failed");
                    }
                    tokio::time::sleep(if shed { ACCEPT_BACKOFF_SHED } else { ACCEPT_BACKOFF })
                        .await;
                }
            }
        }
    }

    drop(acceptor);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "requests still running {:?} after shutdown began; dropping them",
            limits.shutdown_grace
        );
        tasks.shutdown().await;
    }
    Ok(())
}
