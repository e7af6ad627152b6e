//! The user service: users in SQLite, served over HTTP behind service JWTs.
//!
//! | Route | Permission |
//! |---|---|
//! | `GET /users/{id}` | `read:users` |
//! | `GET /users?limit=&cursor=` | `read:users` |
//! | `POST /users` | `write:users` |
//! | `PUT /users/{id}` | `write:users` |
//! | `GET /health` | none |

mod handlers;
pub mod store;

use std::future::Future;
use std::io;
use std::path::Path;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_jwt_service_auth::jwt::server::RequirePermissionLayer;

use crate::auth::{Keys, USER_SERVICE};
use crate::db::Durability;
use crate::fault::Faults;
use crate::server::{self, ServerParts};

pub use self::store::{User, UserStore};

/// What the user service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// The users.
    pub store: UserStore,
    /// Verifier, metrics and faults.
    pub server: ServerParts,
}

impl State {
    /// Opens the database under `data_dir`, with `durability` (seeding
    /// users 1, 2 and 3).
    pub async fn open(
        data_dir: &Path,
        durability: Durability,
        keys: &Keys,
        faults: Faults,
    ) -> Result<State, sqlx::Error> {
        Ok(State {
            store: UserStore::open(data_dir, durability).await?,
            server: ServerParts::new(USER_SERVICE, keys, faults),
        })
    }
}

/// The user service's own routes, each with its permission check.
pub fn routes(state: State) -> Router {
    let read = || RequirePermissionLayer::new("read:users");
    let write = || RequirePermissionLayer::new("write:users");
    Router::new()
        .route(
            "/users",
            get(handlers::list)
                .route_layer(read())
                .merge(axum::routing::post(handlers::create).route_layer(write())),
        )
        .route(
            "/users/{id}",
            get(handlers::get)
                .route_layer(read())
                .merge(axum::routing::put(handlers::update).route_layer(write())),
        )
        .with_state(state)
}

/// The user service: its routes, `/health` and `/metrics` in the common
/// stack ([`server::stack`]).
pub fn app(state: State) -> Router {
    let public = server::public_routes(&state.server);
    server::stack(routes(state.clone()), public, &state.server)
}

/// Serves `app` (the user service made from `state`, [`app`] or
/// its routes alone for `--without-layers`) on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    state: State,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "user service listening");
    let ops = state.server;
    server::serve(listener, app, &ops, shutdown).await
}

impl server::ServiceState for State {
    fn app(&self) -> Router {
        app(self.clone())
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
