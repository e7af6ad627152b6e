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

mod handlers;
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

pub use self::store::{Accepted, Notification, NotificationStore};

/// What the notification service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// The notifications.
    pub store: NotificationStore,
    /// Verifier, metrics and faults.
    pub server: ServerParts,
}

impl State {
    /// Opens the database.
    pub async fn open(db: &Database, keys: &Keys, faults: Faults) -> Result<State, sqlx::Error> {
        Ok(State {
            store: NotificationStore::open(db).await?,
            server: ServerParts::new(NOTIFICATION_SERVICE, keys, faults),
        })
    }
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
    let public = server::public_routes(&state.server);
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
    let ops = state.server;
    server::serve(listener, app, &ops, shutdown).await
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
