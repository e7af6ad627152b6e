//! The server side shared by the three services: the layer stack, serving
//! with graceful shutdown, and waiting for SIGINT or SIGTERM.
//!
//! Stack, outermost first: trace → catch-panic → deadline (the caller's
//! `x-request-budget-ms`, capped by this server's own) → body limit →
//! JWT verification → per-route permission (on each route) → handler.
//! `/health` sits outside the verification; unknown routes and methods
//! answer JSON 404 and 405.

use std::any::Any;
use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tower_circuit::timeout::ServerDeadlineLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use tower_jwt_service_auth::server::VerifyLayer;

use crate::api::{self, ApiError};

/// The largest request body accepted: 1 MiB, then 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// The longest any request may take on a server unless the caller's budget
/// is shorter; longer than the order flow's own client deadline.
pub const SERVER_DEADLINE: Duration = Duration::from_secs(20);

/// How long graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Puts the common stack around a service's routes: `protected` behind the
/// verifier, `public` (health, metrics) before it.
pub fn stack(protected: Router, public: Router, verify: VerifyLayer) -> Router {
    protected
        .layer(verify)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(public)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(ServerDeadlineLayer::new(SERVER_DEADLINE))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the service failed while answering; see its log",
    )
    .into_response()
}

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight requests finish, for at most
/// [`SHUTDOWN_GRACE`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    let server = std::pin::pin!(server.into_future());
    let grace = async {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result,
        () = grace => {
            tracing::warn!("requests still running {SHUTDOWN_GRACE:?} after shutdown began; dropping them");
            Ok(())
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}

/// The `/health` answer of a service without dependencies.
pub fn health(service: &'static str) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok", "service": service }))
}
