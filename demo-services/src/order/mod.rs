//! The order service: order creation over the full client stack.
//!
//! `POST /orders` fetches the user from the user service (falling back to
//! the last copy seen when that service is unavailable), stores the order
//! and its notification record in one transaction, answers 201, and leaves
//! the notification to the [`outbox`], so the notification service can
//! never fail or slow an order.
//!
//! | Route | Permission |
//! |---|---|
//! | `POST /orders` (optional `Idempotency-Key`) | `write:orders` |
//! | `GET /orders/{id}` | `read:orders` |
//! | `GET /orders?userId=` | `read:orders` |
//! | `GET /health` | none |

mod handlers;
pub mod outbox;
pub mod resilience;
pub mod store;
pub mod upstream;

use std::future::Future;
use std::io;
use std::path::Path;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_jwt_service_auth::server::RequirePermissionLayer;

use crate::auth::{Keys, ORDER_SERVICE};
use crate::server;

pub use self::outbox::Outbox;
pub use self::resilience::Resilience;
pub use self::store::{Order, OrderStore};
pub use self::upstream::Upstream;

/// What the order service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// Orders, keys, cached users and the outbox.
    pub store: OrderStore,
    /// The user and notification clients.
    pub upstream: Upstream,
    /// The notification sender's handle.
    pub outbox: Outbox,
    /// Key material for verifying callers.
    pub keys: Keys,
}

/// Where the order service's dependencies are and how to call them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the user service.
    pub user_url: String,
    /// Base URL of the notification service.
    pub notification_url: String,
    /// Breaker, retry and timeout settings.
    pub resilience: Resilience,
}

/// The order service could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database.
    Db(sqlx::Error),
    /// The clients.
    Upstream(upstream::UpstreamError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Db(e) => write!(f, "database: {e}"),
            StartError::Upstream(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl State {
    /// Opens the database under `data_dir` and builds the clients.
    pub async fn open(
        data_dir: &Path,
        keys: Keys,
        settings: &Settings,
    ) -> Result<State, StartError> {
        let store = OrderStore::open(data_dir).await.map_err(StartError::Db)?;
        let upstream = Upstream::new(
            &settings.user_url,
            &settings.notification_url,
            &settings.resilience,
            &keys,
        )
        .map_err(StartError::Upstream)?;
        let outbox = Outbox::new(
            store.clone(),
            upstream.notifications.clone(),
            settings.resilience.outbox_backoff(),
        )
        .await
        .map_err(StartError::Db)?;
        Ok(State {
            store,
            upstream,
            outbox,
            keys,
        })
    }
}

/// The order service's routes in the common stack.
pub fn app(state: State) -> Router {
    let read = || RequirePermissionLayer::new("read:orders");
    let protected = Router::new()
        .route(
            "/orders",
            post(handlers::create)
                .route_layer(RequirePermissionLayer::new("write:orders"))
                .merge(get(handlers::list).route_layer(read())),
        )
        .route("/orders/{id}", get(handlers::get).route_layer(read()))
        .with_state(state.clone());
    let public = Router::new().route("/health", get(|| async { server::health(ORDER_SERVICE) }));
    server::stack(protected, public, state.keys.verify_layer(ORDER_SERVICE))
}

/// Serves the order service on `listener` and delivers notifications in
/// the background, until `shutdown`.
pub async fn run(
    listener: TcpListener,
    state: State,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!(
        addr = %listener.local_addr()?,
        pending_notifications = state.outbox.pending(),
        "order service listening"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let signal = stop_tx.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = signal.send(true);
    });
    let outbox = tokio::spawn(state.outbox.clone().run(stopped(stop_rx.clone())));
    let result = server::serve(listener, app(state), stopped(stop_rx)).await;
    // The server may also end on an error: stop the sender either way.
    let _ = stop_tx.send(true);
    watcher.abort();
    let _ = outbox.await;
    result
}
