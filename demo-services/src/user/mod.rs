//! The user service: users in SQLite, served over HTTP behind service JWTs.
//!
//! | Route | Permission |
//! |---|---|
//! | `GET /users/{id}` | `read:users` |
//! | `GET /users?limit=&cursor=` | `read:users` |
//! | `POST /users` | `write:users` |
//! | `PUT /users/{id}` | `write:users` |
//! | `GET /health` | none |
//! | gRPC `/user.UserService/GetUser`, `/ListUsers` | `read:users` |
//! | gRPC `/user.UserService/UpdateUser` | `write:users` |
//! | gRPC `grpc.health.v1.Health`, server reflection | none |
//!
//! REST (HTTP/1.1) and gRPC (HTTP/2) share the listener and the stack;
//! [`grpc`] has the gRPC service and its status codes.

pub mod grpc;
mod handlers;
pub mod store;
mod validate;

use std::future::Future;
use std::io;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use tower_jwt_service_auth::jwt::server::RequirePermissionLayer;

use crate::auth::{Keys, USER_SERVICE};
use crate::db::Database;
use crate::fault::Faults;
use crate::server::{self, ServerParts};

pub use self::grpc::UserGrpc;
pub use self::store::{User, UserStore};

/// What the user service's handlers share.
#[derive(Debug, Clone)]
pub struct State {
    /// The users.
    pub store: UserStore,
    /// Verifier, metrics and faults.
    pub server: ServerParts,
    /// The gRPC health statuses (`""` and `user.UserService`), serving
    /// until shutdown starts.
    pub health: HealthReporter,
    /// Whether gRPC server reflection is served (`--no-grpc-reflection`
    /// turns it off).
    pub grpc_reflection: bool,
}

impl State {
    /// Opens the database (seeding
    /// users 1, 2 and 3 when new).
    pub async fn open(db: &Database, keys: &Keys, faults: Faults) -> Result<State, sqlx::Error> {
        Ok(State {
            store: UserStore::open(db).await?,
            server: ServerParts::new(USER_SERVICE, keys, faults),
            health: grpc::health_reporter().await,
            grpc_reflection: true,
        })
    }
}

/// The user service's own routes, each with its permission check: REST,
/// and one route per gRPC method, so a method's permission is written
/// where the route is (an unknown method falls to the router's fallback).
pub fn routes(state: State) -> Router {
    let read = || RequirePermissionLayer::new("read:users");
    let write = || RequirePermissionLayer::new("write:users");
    let rpc = UserGrpc::new(state.store.clone(), state.server.faults.clone()).into_server();
    // The permission check answers with a body made from a `String`;
    // tonic's body is not, so the server's answer becomes axum's body.
    let grpc = |permission: RequirePermissionLayer| {
        ServiceBuilder::new()
            .layer(permission)
            .map_response(IntoResponse::into_response)
            .service(rpc.clone())
    };
    Router::new()
        .route_service("/user.UserService/GetUser", grpc(read()))
        .route_service("/user.UserService/ListUsers", grpc(read()))
        .route_service("/user.UserService/UpdateUser", grpc(write()))
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

/// The routes without a token: `/health` and `/metrics` as every service
/// has them, gRPC health and (unless turned off) server reflection.
pub fn public_routes(state: &State) -> Router {
    server::public_routes(&state.server)
        .merge(grpc::public_routes(&state.health, state.grpc_reflection))
}

/// The user service: its routes and [`public_routes`] in the common
/// stack ([`server::stack`]).
pub fn app(state: State) -> Router {
    let public = public_routes(&state);
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
    let health = state.health.clone();
    let shutdown = async move {
        shutdown.await;
        grpc::not_serving(&health).await;
    };
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
