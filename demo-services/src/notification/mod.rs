//! The notification service: accepts notifications and keeps them,
//! deduplicated by order, so the order service's at-least-once delivery
//! never shows one order's notification twice.
//!
//! Order ids belong to the order service, so only it may post order
//! notifications (403 `not_order_service` for any other caller). The same
//! notification again is accepted as a redelivery; a different one for an
//! order that has one (another user, channel or message) is a 409
//! `notification_conflict`, logged, and changes nothing.
//!
//! | Route | Permission |
//! |---|---|
//! | `POST /notifications` | `write:notifications`, and the order service |
//! | `GET /notifications?userId=` or `?orderId=` (`&limit=&cursor=`) | `read:notifications` |
//! | `GET /health` | none |
//!
//! With `--notify-via nats` it also takes notifications from NATS
//! JetStream, beside the HTTP route ([`nats`]), and `/health` shows the
//! consumer (`broker`).

mod handlers;
pub mod nats;
pub mod store;

use std::future::Future;
use std::io;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_jwt_service_auth::jwt::server::RequirePermissionLayer;

use crate::auth::{Keys, NOTIFICATION_SERVICE};
use crate::db::Database;
use crate::fault::Faults;
use crate::server::{self, ServerParts};

pub use self::nats::NatsInbox;
pub use self::store::{Accepted, Notification, NotificationStore};

/// How long the notification service waits for its NATS consumer after
/// the server has stopped (it stops at once on shutdown; this bounds a
/// database write in progress).
pub const CONSUMER_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// What the notification service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// The notifications.
    pub store: NotificationStore,
    /// Verifier, metrics and faults.
    pub server: ServerParts,
    /// With `--notify-via nats`, the consumer's side of NATS.
    pub broker: Option<NatsInbox>,
}

impl State {
    /// Opens the database.
    pub async fn open(db: &Database, keys: &Keys, faults: Faults) -> Result<State, sqlx::Error> {
        Ok(State {
            store: NotificationStore::open(db).await?,
            server: ServerParts::new(NOTIFICATION_SERVICE, keys, faults),
            broker: None,
        })
    }

    /// Also takes notifications from NATS (`--notify-via nats`): connects
    /// to `config`'s server (in the background); the consumer runs with
    /// the service ([`run`]).
    pub async fn with_nats(
        mut self,
        config: &crate::broker::NatsConfig,
    ) -> Result<State, crate::broker::BrokerError> {
        self.broker = Some(NatsInbox::connect(config, &self.server.metrics).await?);
        Ok(self)
    }

    /// The `/health` answer: the common one, and with NATS the `broker`
    /// object (connection, stream, subject, consumer and its lag).
    pub async fn health(&self) -> serde_json::Value {
        let mut body = server::health(&self.server);
        if let Some(inbox) = &self.broker {
            body["broker"] = inbox.health().await;
        }
        body
    }

    /// The `/metrics` answer's text.
    pub async fn metrics(&self) -> String {
        server::observe(&self.server);
        if let Some(inbox) = &self.broker {
            inbox.observe().await;
        }
        self.server.metrics.render()
    }
}

/// `/health` and `/metrics`, with the NATS consumer's figures when it runs.
pub fn public_routes(state: State) -> Router {
    use axum::extract::State as Extract;
    Router::new()
        .route(
            "/health",
            get(|Extract(state): Extract<State>| async move { axum::Json(state.health().await) }),
        )
        .route(
            "/metrics",
            get(|Extract(state): Extract<State>| async move {
                server::metrics_response(state.metrics().await)
            }),
        )
        .with_state(state)
}

/// The notification service's own routes, each with its permission check.
pub fn routes(state: State) -> Router {
    Router::new()
        .route(
            "/notifications",
            post(handlers::create)
                .route_layer(RequirePermissionLayer::new("write:notifications"))
                .merge(
                    get(handlers::list)
                        .route_layer(RequirePermissionLayer::new("read:notifications")),
                ),
        )
        .with_state(state)
}

/// The notification service: its routes, `/health` and `/metrics` in the common
/// stack ([`server::stack`]).
pub fn app(state: State) -> Router {
    let public = public_routes(state.clone());
    server::stack(routes(state.clone()), public, &state.server)
}

/// Serves `app` (the notification service made from `state`, [`app`] or
/// its routes alone for `--without-layers`) on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    state: State,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "notification service listening");
    let Some(inbox) = state.broker.clone() else {
        let ops = state.server;
        return server::serve(listener, app, &ops, shutdown).await;
    };
    // The consumer runs beside the server and stops with it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let signal = stop_tx.clone();
    let watcher = tokio::spawn(async move {
        shutdown.await;
        let _ = signal.send(true);
    });
    let mut consumer = tokio::spawn(inbox.run(state.store.clone(), stopped(stop_rx.clone())));
    let result = server::serve(listener, app, &state.server, stopped(stop_rx)).await;
    let _ = stop_tx.send(true);
    watcher.abort();
    if tokio::time::timeout(CONSUMER_STOP, &mut consumer)
        .await
        .is_err()
    {
        tracing::warn!("the NATS consumer did not stop within {CONSUMER_STOP:?}; abandoning it");
        consumer.abort();
    }
    result
}

impl server::ServiceState for State {
    fn app(&self) -> Router {
        app(self.clone())
    }

    fn parts(&self) -> &server::ServerParts {
        &self.server
    }

    fn run(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = io::Result<()>> + Send {
        run(listener, self, app, shutdown)
    }
}
