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
//! | `GET /orders?userId=` (`&limit=&cursor=`) | `read:orders` |
//! | `GET /health` | none |

mod handlers;
pub mod money;
pub mod notify;
pub mod outbox;
pub mod resilience;
pub mod store;
pub mod upstream;

use std::future::Future;
use std::io;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_jwt_service_auth::jwt::server::RequirePermissionLayer;

use crate::auth::{Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use crate::db::Database;
use crate::fault::Faults;
use crate::server::{self, ServerParts};
use crate::tls::identity::TlsDir;

pub use self::notify::{NatsNotifier, Notifier};
pub use self::outbox::Outbox;
pub use self::resilience::Resilience;
pub use self::store::{Order, OrderStore};
pub use self::upstream::Upstream;

/// How long the order service waits for its outbox task after the server
/// has stopped.
pub const OUTBOX_STOP: std::time::Duration = std::time::Duration::from_secs(5);

/// What the order service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// Orders, keys, cached users and the outbox.
    pub store: OrderStore,
    /// The user and notification clients.
    pub upstream: Upstream,
    /// The notification sender's handle.
    pub outbox: Outbox,
    /// With `--notify-via nats`, the publisher the outbox sends through.
    pub broker: Option<NatsNotifier>,
    /// Verifier, metrics and faults.
    pub server: ServerParts,
}

/// Where the order service's dependencies are and how to call them.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the user service.
    pub user_url: String,
    /// Base URL of the notification service.
    pub notification_url: String,
    /// How users are fetched: REST or gRPC, at the host and port of
    /// `user_url` either way.
    pub user_transport: UserTransport,
    /// Breaker, retry and timeout settings.
    pub resilience: Resilience,
    /// With `Some` (`--tls-dir`), the order service serves and calls over
    /// mutual TLS with this directory's CA and its own certificate, and
    /// both URLs are `https://`.
    pub tls: Option<TlsDir>,
    /// With `Some` (`--notify-via nats`), notifications are published to
    /// NATS JetStream rather than posted to `notification_url`.
    pub nats: Option<crate::broker::NatsConfig>,
}

/// How the order service calls the user service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum UserTransport {
    /// `GET /users/{id}` over HTTP/1.1, JSON.
    #[default]
    Http,
    /// `user.UserService/GetUser` over HTTP/2 (cleartext, or mutual TLS
    /// with `--tls-dir`), protobuf.
    Grpc,
}

/// The order service could not start.
#[derive(Debug)]
pub enum StartError {
    /// The database.
    Db(sqlx::Error),
    /// The clients.
    Upstream(upstream::UpstreamError),
    /// Settings that cannot work together.
    Settings(String),
    /// The NATS publisher.
    Broker(crate::broker::BrokerError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Db(e) => write!(f, "database: {e}"),
            StartError::Upstream(e) => write!(f, "{e}"),
            StartError::Settings(e) => f.write_str(e),
            StartError::Broker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl State {
    /// Opens the database and builds the clients, each through the whole
    /// client stack ([`Upstream::new`]).
    pub async fn open(
        db: &Database,
        keys: &Keys,
        settings: &Settings,
        faults: Faults,
    ) -> Result<State, StartError> {
        let mut ops = ServerParts::new(ORDER_SERVICE, keys, faults);
        // One directory for both ends: it serves and calls with the same
        // certificate.
        ops.tls = settings.tls.clone();
        let upstream = Upstream::new(
            &settings.user_url,
            &settings.notification_url,
            settings.user_transport,
            &settings.resilience,
            keys,
            &ops.metrics,
            settings.tls.as_ref(),
        )
        .map_err(StartError::Upstream)?;
        State::with_upstream(db, ops, upstream, settings).await
    }

    /// Opens the database with `upstream`'s clients (for
    /// `--without-layers`, clients without the stack).
    pub async fn with_upstream(
        db: &Database,
        parts: ServerParts,
        upstream: Upstream,
        settings: &Settings,
    ) -> Result<State, StartError> {
        let resilience = &settings.resilience;
        if resilience.outbox_lease <= resilience.call_deadline {
            return Err(StartError::Settings(format!(
                "--outbox-lease ({:?}) must be longer than --call-deadline ({:?}): \
                 a send must end before its lease does",
                resilience.outbox_lease, resilience.call_deadline
            )));
        }
        let store = OrderStore::open(db).await.map_err(StartError::Db)?;
        let broker = match &settings.nats {
            Some(config) => Some(
                NatsNotifier::connect(config, resilience, &parts.metrics)
                    .await
                    .map_err(StartError::Broker)?,
            ),
            None => None,
        };
        let notifier = match &broker {
            Some(nats) => Notifier::Nats(Box::new(nats.clone())),
            None => Notifier::Http(upstream.notifications.client.clone()),
        };
        let outbox = Outbox::new(
            store.clone(),
            notifier,
            resilience.outbox_backoff(),
            resilience.outbox_lease,
            resilience.call_deadline,
            parts.metrics.clone(),
        )
        .await
        .map_err(StartError::Db)?;
        Ok(State {
            store,
            upstream,
            outbox,
            broker,
            server: parts,
        })
    }

    /// The `/health` answer: this service, each dependency's breaker (with
    /// `--notify-via nats`, `nats`'s too, and a `broker` object), and the
    /// undelivered notifications.
    pub fn health(&self) -> serde_json::Value {
        let mut body = server::health(&self.server);
        let dependency = |breaker: &tower_circuit::breaker::Breaker| {
            let metrics = breaker.stats();
            // The breaker's snapshot serializes in Rust's snake_case; the
            // API speaks camelCase everywhere.
            let mut entry =
                crate::api::camel_case_keys(serde_json::to_value(&metrics).unwrap_or_default());
            entry["circuit"] = serde_json::Value::from(metrics.state.as_str());
            entry
        };
        body["dependencies"] = serde_json::json!({
            USER_SERVICE: dependency(self.upstream.users.breaker()),
            NOTIFICATION_SERVICE: dependency(self.upstream.notifications.breaker()),
        });
        if let Some(nats) = &self.broker {
            body["dependencies"][notify::NATS] = dependency(nats.breaker());
            body["broker"] = nats.health();
        }
        body["outbox"] = serde_json::json!({ "pending": self.outbox.pending() });
        body
    }

    /// The `/metrics` answer's text.
    pub fn metrics(&self) -> String {
        let m = &self.server.metrics;
        server::observe(&self.server);
        m.observe_dependency(&self.upstream.users);
        m.observe_dependency(&self.upstream.notifications);
        m.observe_copy_lookups(self.upstream.copy_lookups());
        if let Some(nats) = &self.broker {
            nats.observe();
        }
        let pending = self.outbox.pending() as f64;
        m.record(|| metrics::gauge!("outbox_pending_notifications").set(pending));
        m.render()
    }
}

/// The order service's own routes, each with its permission check.
pub fn routes(state: State) -> Router {
    let read = || RequirePermissionLayer::new("read:orders");
    Router::new()
        .route(
            "/orders",
            post(handlers::create)
                .route_layer(RequirePermissionLayer::new("write:orders"))
                .merge(get(handlers::list).route_layer(read())),
        )
        .route("/orders/{id}", get(handlers::get).route_layer(read()))
        .with_state(state)
}

/// `/health` (with the dependencies' breakers and the outbox) and
/// `/metrics`.
pub fn public_routes(state: State) -> Router {
    Router::new()
        .route(
            "/health",
            get(
                |axum::extract::State(state): axum::extract::State<State>| async move {
                    axum::Json(state.health())
                },
            ),
        )
        .route(
            "/metrics",
            get(
                |axum::extract::State(state): axum::extract::State<State>| async move {
                    server::metrics_response(state.metrics())
                },
            ),
        )
        .with_state(state)
}

/// The order service: its routes, `/health` and `/metrics` in the common
/// stack ([`server::stack`]).
pub fn app(state: State) -> Router {
    server::stack(
        routes(state.clone()),
        public_routes(state.clone()),
        &state.server,
    )
}

/// Serves `app` (the order service made from `state`, [`app`] or
/// its routes alone for `--without-layers`) on `listener` and delivers notifications
/// in the background, until `shutdown`.
pub async fn run(
    listener: TcpListener,
    state: State,
    app: Router,
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
    let ops = state.server.clone();
    let result = server::serve(listener, app, &ops, stopped(stop_rx)).await;
    // The server may also end on an error: stop the sender either way.
    let _ = stop_tx.send(true);
    watcher.abort();
    // The outbox stops at once on the signal (it abandons a delivery in
    // flight); its last database write is bounded by SQLite's busy
    // timeout. Bounded here too, so shutdown never hangs on it.
    let mut outbox = outbox;
    if tokio::time::timeout(OUTBOX_STOP, &mut outbox)
        .await
        .is_err()
    {
        tracing::warn!("the outbox did not stop within {OUTBOX_STOP:?}; abandoning it");
        outbox.abort();
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
