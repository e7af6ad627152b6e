//! The user service over gRPC: `user.UserService` of `proto/user.proto`
//! on the same store and with the same rules as the REST handlers, and
//! the public `grpc.health.v1.Health` and server reflection beside it.
//!
//! | Outcome | Status |
//! |---|---|
//! | unknown id | `NOT_FOUND` |
//! | id ≤ 0, negative `page` or `page_size`, `page_size` > 100, a bad name or email | `INVALID_ARGUMENT` |
//! | the email is another user's | `ALREADY_EXISTS` |
//! | the database is busy or gone | `UNAVAILABLE` |
//! | any other database failure | `INTERNAL` (details in the log only) |
//!
//! Authentication, permissions, deadlines and injected faults are the
//! stack's, as for REST: each method is its own route in
//! [`routes`](super::routes), under its permission check.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use tokio::time::Sleep;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};

use super::store::{self, UserStore, WriteError};
use super::validate;
use crate::api::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::fault::Faults;
use crate::proto::user::user_service_server::{UserService, UserServiceServer};
use crate::proto::user::{self as pb, GetUserRequest, ListUsersRequest, UpdateUserRequest};
use crate::telemetry::Escaped;

/// The largest gRPC message the user service decodes or encodes. Its
/// messages are a few hundred bytes (a name is at most 200 characters, an
/// email 254 bytes), so 64 KiB is ample and a bigger one is refused
/// before it is buffered.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The `page_size` of `ListUsers` when the request's is 0 (proto3 cannot
/// tell 0 from unset): the REST list's default limit.
pub const DEFAULT_PAGE_SIZE: u32 = DEFAULT_LIMIT;

/// The largest `page_size` of `ListUsers`; more is `INVALID_ARGUMENT`
/// (not clamped, as for the REST list's `limit`).
pub const MAX_PAGE_SIZE: u32 = MAX_LIMIT;

/// The implementation of `user.UserService` over the [`UserStore`].
#[derive(Debug, Clone)]
pub struct UserGrpc {
    store: UserStore,
    faults: Faults,
}

impl UserGrpc {
    /// The service over `store`; `faults`' latency also spaces the
    /// messages of `ListUsers` (see [`crate::fault`]).
    pub fn new(store: UserStore, faults: Faults) -> UserGrpc {
        UserGrpc { store, faults }
    }

    /// This service as tonic's generated server, with its message limits
    /// ([`MAX_MESSAGE`]).
    pub fn into_server(self) -> UserServiceServer<UserGrpc> {
        UserServiceServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }
}

#[tonic::async_trait]
impl UserService for UserGrpc {
    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let id = user_id(req.get_ref().id)?;
        let user = self.store.get(id).await.map_err(db_error)?;
        let user = user.ok_or_else(|| no_user(id))?;
        Ok(Response::new(to_proto(user)?))
    }

    type ListUsersStream = UserStream;

    async fn list_users(
        &self,
        req: Request<ListUsersRequest>,
    ) -> Result<Response<UserStream>, Status> {
        let (offset, limit) = page(req.get_ref())?;
        // The page (at most 100 small rows) is read at once and streamed
        // from memory: a database cursor held open while a slow client
        // reads would hold one of the pool's few connections with it.
        let users = self
            .store
            .page_at(offset, limit)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(to_proto)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Response::new(UserStream::new(users, self.faults.latency())))
    }

    async fn update_user(
        &self,
        req: Request<UpdateUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let req = req.get_ref();
        let id = user_id(req.id)?;
        // proto3 sends an unset string as "", so "" keeps the field; any
        // other value follows the REST rules (trimmed, then checked).
        let name = optional(&req.name, validate::name)?;
        let email = optional(&req.email, validate::email)?;
        let user = self
            .store
            .patch(id, name, email)
            .await
            .map_err(|e| match e {
                WriteError::EmailTaken => Status::already_exists("another user has this email"),
                WriteError::Db(e) => db_error(e),
            })?
            .ok_or_else(|| no_user(id))?;
        tracing::info!(user = user.id, "user updated over gRPC");
        Ok(Response::new(to_proto(user)?))
    }
}

fn user_id(id: i32) -> Result<i64, Status> {
    if id <= 0 {
        return Err(Status::invalid_argument("id must be 1 or more"));
    }
    Ok(i64::from(id))
}

fn no_user(id: i64) -> Status {
    Status::not_found(format!("no user {id}"))
}

fn optional(
    value: &str,
    check: fn(&str) -> Result<&str, &'static str>,
) -> Result<Option<&str>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    check(value).map(Some).map_err(Status::invalid_argument)
}

/// The offset and size of the page `req` asks for: `page` counts from 1
/// (0 is 1), `page_size` 0 is [`DEFAULT_PAGE_SIZE`].
fn page(req: &ListUsersRequest) -> Result<(i64, u32), Status> {
    if req.page < 0 {
        return Err(Status::invalid_argument(
            "page must be 0 or more (pages count from 1; 0 is the first)",
        ));
    }
    let size = match u32::try_from(req.page_size) {
        Ok(0) => DEFAULT_PAGE_SIZE,
        Ok(size) if size <= MAX_PAGE_SIZE => size,
        _ => {
            return Err(Status::invalid_argument(format!(
                "page_size must be from 1 to {MAX_PAGE_SIZE} (0 takes {DEFAULT_PAGE_SIZE})"
            )));
        }
    };
    // At most (2^31 - 2) · 100: far inside an i64.
    let offset = (i64::from(req.page.max(1)) - 1) * i64::from(size);
    Ok((offset, size))
}

fn to_proto(user: store::User) -> Result<pb::User, Status> {
    // The proto's ids are int32; SQLite's are 64-bit. A row past 2^31
    // cannot be shown through this API, which is said rather than wrapped.
    let id = i32::try_from(user.id).map_err(|_| {
        tracing::error!(
            user = user.id,
            "a user id does not fit the gRPC API's int32"
        );
        Status::internal("a user id does not fit the API's int32")
    })?;
    Ok(pb::User {
        id,
        name: user.name,
        email: user.email,
        created_at: user.created_at,
    })
}

/// A database failure as a status: `UNAVAILABLE` when trying again later
/// can help (the pool is exhausted or closed, the file cannot be read),
/// `INTERNAL` otherwise. The error itself, which may quote SQL, goes to the
/// log only.
fn db_error(e: sqlx::Error) -> Status {
    tracing::error!(error = %Escaped(&e), "database error");
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            Status::unavailable("the database is unavailable; try again later")
        }
        _ => Status::internal("database error; see the service's log"),
    }
}

// === impl UserStream ===

pin_project_lite::pin_project! {
    /// The messages of one `ListUsers` page, handed out as the client
    /// reads them, each after the injected latency (none unless fault
    /// injection is on).
    pub struct UserStream {
        users: std::vec::IntoIter<pb::User>,
        latency: Duration,
        #[pin]
        delay: Option<Sleep>,
    }
}

impl UserStream {
    fn new(users: Vec<pb::User>, latency: Duration) -> UserStream {
        UserStream {
            users: users.into_iter(),
            latency,
            delay: None,
        }
    }
}

impl fmt::Debug for UserStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStream")
            .field("left", &self.users.len())
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl Stream for UserStream {
    type Item = Result<pb::User, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if this.users.len() == 0 {
            return Poll::Ready(None);
        }
        if !this.latency.is_zero() {
            if this.delay.is_none() {
                this.delay.set(Some(tokio::time::sleep(*this.latency)));
            }
            if let Some(delay) = this.delay.as_mut().as_pin_mut() {
                std::task::ready!(delay.poll(cx));
            }
            this.delay.set(None);
        }
        Poll::Ready(this.users.next().map(Ok))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.users.size_hint()
    }
}

// === health and reflection ===

/// A health reporter with the server (`""`) and `user.UserService`
/// serving.
pub(super) async fn health_reporter() -> HealthReporter {
    let reporter = HealthReporter::new();
    reporter.set_serving::<UserServiceServer<UserGrpc>>().await;
    reporter
}

/// Marks the server and `user.UserService` as not serving: from the start
/// of shutdown on, so health checks and watchers learn it before the
/// listener goes.
pub(super) async fn not_serving(reporter: &HealthReporter) {
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_not_serving::<UserServiceServer<UserGrpc>>()
        .await;
}

/// The public gRPC routes: `grpc.health.v1.Health` from `health`, and
/// server reflection (v1 and v1alpha, describing `user.proto` and the
/// health service) when `reflection` is on.
pub(super) fn public_routes(health: &HealthReporter, reflection: bool) -> Router {
    // Their requests are small too: the same decoding limit as
    // `user.UserService` (tonic's default would be 4 MiB).
    let health = HealthServer::new(HealthService::from_health_reporter(health.clone()))
        .max_decoding_message_size(MAX_MESSAGE);
    let router = Router::new().route_service("/grpc.health.v1.Health/{*method}", health);
    if !reflection {
        return router;
    }
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // The descriptor sets are built into the binary; the unit test below
    // shows they load, so a failure here is a build gone wrong, logged
    // rather than taking the service down.
    match (builder().build_v1(), builder().build_v1alpha()) {
        (Ok(v1), Ok(v1alpha)) => router
            .route_service(
                "/grpc.reflection.v1.ServerReflection/{*method}",
                v1.max_decoding_message_size(MAX_MESSAGE),
            )
            .route_service(
                "/grpc.reflection.v1alpha.ServerReflection/{*method}",
                v1alpha.max_decoding_message_size(MAX_MESSAGE),
            ),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "gRPC reflection is off: its descriptors do not load");
            router
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(page: i32, page_size: i32) -> Result<(i64, u32), Code> {
        super::page(&ListUsersRequest { page, page_size }).map_err(|s| s.code())
    }

    use tonic::Code;

    #[test]
    fn pages_count_from_one_with_defaults_for_zero() {
        assert_eq!(list(0, 0), Ok((0, DEFAULT_PAGE_SIZE)));
        assert_eq!(list(1, 0), Ok((0, DEFAULT_PAGE_SIZE)));
        assert_eq!(list(3, 10), Ok((20, 10)));
        assert_eq!(
            list(i32::MAX, 100),
            Ok(((i64::from(i32::MAX) - 1) * 100, 100))
        );
        for (page, size) in [(-1, 0), (0, -1), (0, 101), (i32::MIN, i32::MIN)] {
            assert_eq!(
                list(page, size),
                Err(Code::InvalidArgument),
                "{page}, {size}"
            );
        }
    }

    #[test]
    fn reflection_loads_the_built_descriptors() {
        let descriptors = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        assert!(descriptors.build_v1().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn each_streamed_user_waits_for_the_latency() {
        use tokio_stream::StreamExt;
        let user = |id| pb::User {
            id,
            ..Default::default()
        };
        let start = tokio::time::Instant::now();
        let mut stream = std::pin::pin!(UserStream::new(
            vec![user(1), user(2)],
            Duration::from_millis(100)
        ));
        let first = stream.next().await.map(|u| u.map(|u| u.id).ok());
        assert_eq!(first, Some(Some(1)));
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        let second = stream.next().await.map(|u| u.map(|u| u.id).ok());
        assert_eq!(second, Some(Some(2)));
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        assert!(stream.next().await.is_none());
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(200),
            "no wait after the last"
        );
    }
}
