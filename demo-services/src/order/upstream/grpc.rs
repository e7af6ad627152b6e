//! The user service over gRPC (`--user-transport grpc`): `GetUser` through
//! a tonic client whose stack, written out in `users` (below), is the REST
//! client's with the gRPC pieces in place of the HTTP ones, outermost
//! first: our errors as `tonic::Status` → deadline → request body buffered
//! once (so attempts can be replayed) → retry (gRPC rules, GetUser
//! idempotent) → circuit breaker (judging `grpc-status`, trailers included)
//! → per-attempt timeout → deadline propagation (`grpc-timeout` and
//! `x-request-budget-ms`) → request id → the caller's credential (a
//! service JWT or the API key in the metadata, by `--service-auth`) →
//! hyper-util client speaking HTTP/2, cleartext or (with `--tls-dir`) over
//! mutual TLS.

use std::time::Duration;

use http::Uri;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use tonic::{Code, Status};
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit::breaker::{Breaker, CircuitOpen};
use tower_circuit::grpc::replay::ReplayLayer;
use tower_circuit::grpc::retry::{GrpcMethods, GrpcRetryClassifier};
use tower_circuit::grpc::{GrpcBreakerLayer, StatusLayer};
use tower_circuit::retry::RetryLayer;
use tower_circuit::timeout::{
    DeadlineLayer, Elapsed, Fixed, PropagateDeadlineLayer, RequestTimeoutLayer,
};

use super::super::resilience::Resilience;
use super::{Credentials, UpstreamError};
use crate::auth::USER_SERVICE;
use crate::proto::user::user_service_client::UserServiceClient;
use crate::proto::user::{GetUserRequest, User};
use crate::telemetry::request_id;
use crate::telemetry::{Escaped, Metrics};

/// The one method the order service calls, as it appears on the wire.
const GET_USER: &str = "/user.UserService/GetUser";

/// The client stack as tonic sees it: boxed once, so the long type of the
/// layers stays where they are written.
type Channel = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Status,
>;

/// The user service's gRPC client.
#[derive(Debug, Clone)]
pub struct GrpcUsers {
    client: UserServiceClient<Channel>,
}

impl GrpcUsers {
    /// Fetches user `id`.
    pub async fn get(&self, id: i64) -> Result<User, Status> {
        let id = i32::try_from(id)
            // Ids past i32 cannot exist on the gRPC side: the contract's
            // `int32 id`. Answer as the service would for an unknown id.
            .map_err(|_| Status::not_found(format!("no user {id}")))?;
        let mut client = self.client.clone();
        client
            .get_user(GetUserRequest { id })
            .await
            .map(tonic::Response::into_inner)
    }
}

/// The innermost client: hyper-util speaking HTTP/2 only, over mutual TLS
/// with `tls` (ALPN `h2`), else cleartext with prior knowledge. Boxed, so
/// the stack above is one type either way.
type H2<B> = BoxCloneSyncService<
    http::Request<B>,
    http::Response<Incoming>,
    hyper_util::client::legacy::Error,
>;

fn h2_client<B>(tls: Option<Arc<ClientConfig>>) -> H2<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<tower_circuit::BoxError>,
{
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(true);
    match tls {
        Some(config) => {
            BoxCloneSyncService::new(builder.build(crate::tls::client::connector(config)))
        }
        None => BoxCloneSyncService::new(builder.build_http()),
    }
}

/// Where the gRPC client connects: the scheme, host and port of the user
/// service's URL (its path, if any, is not part of a gRPC call).
fn origin(user_url: &str) -> Result<Uri, UpstreamError> {
    let uri: Uri = user_url
        .parse()
        .map_err(|e| UpstreamError::Grpc(format!("user URL {user_url:?}: {e}")))?;
    let authority = uri
        .authority()
        .ok_or_else(|| UpstreamError::Grpc(format!("user URL {user_url:?} has no host")))?;
    // `https` is what tells the TLS connector to connect at all.
    let scheme = uri.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP);
    Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str())
        .path_and_query("/")
        .build()
        .map_err(|e| UpstreamError::Grpc(format!("user URL {user_url:?}: {e}")))
}

/// The user service's gRPC client through the whole stack, guarded by
/// `breaker` (which `/health` and `/metrics` show as they do for REST),
/// and its retry layer, for its counts. With `tls` (see
/// [`crate::tls::client::client_config`]) it calls over mutual TLS.
pub(super) fn users(
    user_url: &str,
    resilience: &Resilience,
    breaker: &Breaker,
    credentials: &Credentials,
    metrics: &Metrics,
    tls: Option<Arc<ClientConfig>>,
) -> Result<(GrpcUsers, RetryLayer<GrpcRetryClassifier, GrpcMethods>), UpstreamError> {
    let origin = origin(user_url)?;
    // GetUser reads: calling it twice is calling it once.
    let methods = GrpcMethods::new().idempotent(GET_USER);
    let on_retry = metrics.clone();
    let retry = resilience
        .retry(USER_SERVICE)
        .idempotency(methods.clone())
        .on_retry(move |e| on_retry.retry(&e.name, &e.reason))
        .build()
        .map_err(UpstreamError::Retry)?
        .classifier(GrpcRetryClassifier);
    let http = h2_client(tls);
    let stack = ServiceBuilder::new()
        // An open circuit reaches the caller as UNAVAILABLE, a timeout as
        // DEADLINE_EXCEEDED; the original error stays the status's source.
        .layer(StatusLayer::new())
        // One budget for the whole call, retries included.
        .layer(DeadlineLayer::new(resilience.call_deadline))
        // tonic's request body streams; GetUser's is read once, so that a
        // retry sends the same bytes.
        .layer(ReplayLayer::new(methods))
        // UNAVAILABLE and transport errors, GetUser only; never after
        // `CircuitOpen`, never a server's DEADLINE_EXCEEDED.
        .layer(retry.clone())
        // Inside retry, so it counts every attempt; reads `grpc-status`
        // from the head or, after the messages, the trailers.
        .layer(GrpcBreakerLayer::new(breaker.clone()))
        // Each attempt's own limit: GetUser is a read.
        .layer(RequestTimeoutLayer::new(Fixed(resilience.timeout_get)))
        // The time left, as `grpc-timeout` and `x-request-budget-ms`.
        .layer(PropagateDeadlineLayer::new().min_budget(crate::server::MIN_BUDGET))
        // The inbound request's id, as `x-request-id` metadata.
        .layer(request_id::outbound_layer())
        // Who is calling, by `--service-auth`: a service token addressed
        // to the user service (`authorization` metadata), or the API key
        // (`x-service-name`, `x-api-key`), or neither.
        .option_layer(credentials.token_for(USER_SERVICE))
        .option_layer(credentials.api_key())
        // One error type under both choices (the token layer's).
        .map_err(tower::BoxError::from)
        // HTTP/2: cleartext with prior knowledge, or mutual TLS.
        .service(http)
        .map_response(|res| res.map(tonic::body::Body::new));
    let client = UserServiceClient::with_origin(BoxCloneSyncService::new(stack), origin);
    Ok((GrpcUsers { client }, retry))
}

/// The user service's gRPC client straight through hyper-util, for
/// `--without-layers`.
pub(super) fn bare(user_url: &str) -> Result<GrpcUsers, UpstreamError> {
    let origin = origin(user_url)?;
    let http = h2_client::<tonic::body::Body>(None);
    let stack = ServiceBuilder::new()
        .layer(StatusLayer::new())
        .service(http)
        .map_response(|res| res.map(tonic::body::Body::new));
    Ok(GrpcUsers {
        client: UserServiceClient::with_origin(BoxCloneSyncService::new(stack), origin),
    })
}

/// A failed gRPC lookup as the order service answers it: whether the
/// caller's own deadline ended it, and how long an open circuit has left.
pub(super) fn deadline_spent(status: &Status) -> bool {
    status.code() == Code::DeadlineExceeded
        && source::<Elapsed>(status).is_some_and(Elapsed::is_deadline)
}

/// The time an open circuit has left, if the lookup was refused by one.
pub(super) fn retry_after(status: &Status) -> Option<Duration> {
    source::<CircuitOpen>(status).and_then(CircuitOpen::retry_after)
}

/// Whether the user service refused the lookup itself (a caller-side
/// code: our token, our permission, our argument), which falls back like
/// any failure but answers 502 rather than 503 when there is no copy.
pub(super) fn refused(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
    )
}

/// The first error of type `E` in `status`'s sources.
fn source<E: std::error::Error + 'static>(status: &Status) -> Option<&E> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The status as a log field: its code and its escaped message.
pub(super) fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), Escaped(status.message()))
}
