//! The order service's calls to its dependencies, each through the client
//! stack written out in [`Upstream::new`], outermost first: deadline →
//! retry → circuit breaker → per-attempt timeout → deadline propagation →
//! request id → JWT signing → hyper-util client.

use axum::http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_circuit::breaker::{Breaker, BreakerConfigError};
use tower_circuit::client::{BuildError, ClientError, DEFAULT_MAX_BODY, ServiceClient, wire};
use tower_circuit::retry::{RetryConfigError, RetryLayer, RetryStats};
use tower_circuit::timeout::{DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};
use tower_jwt_service_auth::jwt::client::SignTokenLayer;

use super::resilience::Resilience;
use super::store::{CachedUser, OrderStore, OrderUser};
use crate::api::ApiError;
use crate::auth::{KeyMaterialError, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use crate::telemetry::request_id;
use crate::telemetry::{Escaped, Metrics};

/// One dependency: the JSON client over its stack, and the handles of the
/// stack's breaker and retry layer, for `/health`, `/metrics` and tests.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The client every call goes through.
    pub client: ServiceClient,
    breaker: Breaker,
    retry: RetryLayer,
}

impl Dependency {
    /// The breaker guarding the dependency.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The retry layer's counts.
    pub fn retry_stats(&self) -> RetryStats {
        self.retry.stats()
    }
}

/// The clients of the user and notification services.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The user service.
    pub users: Dependency,
    /// The notification service.
    pub notifications: Dependency,
}

/// An upstream client could not be built.
#[derive(Debug)]
pub enum UpstreamError {
    /// A bad URL.
    Build(BuildError),
    /// A breaker setting out of range.
    Breaker(BreakerConfigError),
    /// A retry setting out of range.
    Retry(RetryConfigError),
    /// No key to sign with.
    Keys(KeyMaterialError),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Build(e) => write!(f, "{e}"),
            UpstreamError::Breaker(e) => write!(f, "breaker: {e}"),
            UpstreamError::Retry(e) => write!(f, "retry: {e}"),
            UpstreamError::Keys(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl Upstream {
    /// Clients for the services at `user_url` and `notification_url`, each
    /// through the whole client stack; breaker changes and retries are
    /// counted in `metrics`.
    pub fn new(
        user_url: &str,
        notification_url: &str,
        resilience: &Resilience,
        keys: &Keys,
        metrics: &Metrics,
    ) -> Result<Upstream, UpstreamError> {
        let signer = keys.signer(ORDER_SERVICE).map_err(UpstreamError::Keys)?;
        let dependency = |name: &'static str, url: &str| {
            let (on_change, on_retry) = (metrics.clone(), metrics.clone());
            let breaker = Breaker::builder(name)
                .config(resilience.breaker())
                .on_state_change(move |c| on_change.transition(&c.name, c.from, c.to))
                .build()
                .map_err(UpstreamError::Breaker)?;
            if resilience.no_breaker {
                breaker.disable();
            }
            let retry = resilience
                .retry(name)
                .on_retry(move |e| on_retry.retry(&e.name, &e.reason))
                .build()
                .map_err(UpstreamError::Retry)?;
            let http = Client::builder(TokioExecutor::new()).build_http();
            let stack = ServiceBuilder::new()
                // One budget for the whole call, retries included.
                .layer(DeadlineLayer::new(resilience.call_deadline))
                // Tries again inside that budget; never after `CircuitOpen`.
                .layer(retry.clone())
                // Inside retry, so it counts every attempt.
                .layer(breaker.layer())
                // Each attempt's own limit, by method.
                .layer(RequestTimeoutLayer::new(resilience.timeouts()))
                // The time left, as `x-request-budget-ms`; no call with
                // less than the servers' least budget.
                .layer(PropagateDeadlineLayer::new().min_budget(crate::server::MIN_BUDGET))
                // The inbound request's id, as `x-request-id`.
                .layer(request_id::outbound_layer())
                // A service token addressed to `name`, signed once and
                // reused until 80 % of its lifetime.
                .layer(SignTokenLayer::new(signer.clone(), name))
                // hyper-util, reading the whole body (at most 4 MiB)
                // inside the attempt's timeout.
                .service(wire(http, DEFAULT_MAX_BODY));
            let client = ServiceClient::new(name, url, stack).map_err(UpstreamError::Build)?;
            Ok(Dependency {
                client,
                breaker,
                retry,
            })
        };
        Ok(Upstream {
            users: dependency(USER_SERVICE, user_url)?,
            notifications: dependency(NOTIFICATION_SERVICE, notification_url)?,
        })
    }

    /// Clients for `--without-layers` (measuring what the stack costs):
    /// straight through hyper-util, with no deadline, retry, breaker,
    /// timeout, request id or token. The breaker and retry handles exist
    /// for `/health` and `/metrics` but see no calls.
    pub(crate) fn without_layers(
        user_url: &str,
        notification_url: &str,
    ) -> Result<Upstream, UpstreamError> {
        let dependency = |name: &'static str, url: &str| {
            let http = Client::builder(TokioExecutor::new()).build_http();
            let client = ServiceClient::new(name, url, wire(http, DEFAULT_MAX_BODY))
                .map_err(UpstreamError::Build)?;
            Ok(Dependency {
                client,
                breaker: Breaker::builder(name)
                    .build()
                    .map_err(UpstreamError::Breaker)?,
                retry: RetryLayer::builder(name)
                    .max_retries(0)
                    .build()
                    .map_err(UpstreamError::Retry)?,
            })
        };
        Ok(Upstream {
            users: dependency(USER_SERVICE, user_url)?,
            notifications: dependency(NOTIFICATION_SERVICE, notification_url)?,
        })
    }

    /// The user `id`: fresh from the user service when it answers (the copy
    /// is kept), else the last copy kept. A user the service does not know
    /// is a 404; no service and no copy is a 503, with `Retry-After` while
    /// the breaker is open.
    pub async fn user(&self, store: &OrderStore, id: i64) -> Result<OrderUser, ApiError> {
        #[derive(Deserialize, Serialize)]
        struct RemoteUser {
            id: i64,
            name: String,
            email: String,
        }
        let error = match self
            .users
            .client
            .get::<RemoteUser>(&format!("/users/{id}"))
            .await
        {
            Ok(user) => {
                let copy = CachedUser {
                    id: user.id,
                    name: user.name,
                    email: user.email,
                };
                if let Err(e) = store.cache_user(&copy).await {
                    // The order can go on; only the fallback copy is stale.
                    tracing::warn!(error = %Escaped(&e), user = id, "could not keep a copy of the user");
                }
                return Ok(OrderUser {
                    name: copy.name,
                    email: copy.email,
                    source: "live".to_owned(),
                });
            }
            Err(ClientError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "user_not_found",
                    format!("user not found: {id}"),
                ));
            }
            Err(e) => e,
        };
        if let Some(copy) = store.cached_user(id).await? {
            tracing::warn!(
                user = id,
                error = %Escaped(&error),
                "user service unavailable; using the last copy of the user"
            );
            return Ok(OrderUser {
                name: copy.name,
                email: copy.email,
                source: "cache".to_owned(),
            });
        }
        tracing::warn!(user = id, error = %Escaped(&error), "user service unavailable and no copy of the user");
        if error.is_deadline() {
            // The caller's budget ran out, not the user service: say so in
            // a way the caller's own breaker will not count (504 with
            // `x-request-budget-ms: 0`).
            return Err(ApiError::budget_spent(
                "the request's budget ran out before the user service answered",
            ));
        }
        let mut answer = match &error {
            ClientError::Status { status, .. } if status.is_client_error() => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "user_service_rejected",
                format!("the user service refused the lookup ({status})"),
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "user_service_unavailable",
                format!("the user service is unavailable and user {id} was never seen: {error}"),
            ),
        };
        if let Some(left) = error.retry_after() {
            // Whole seconds, rounded up, and at least 1.
            let secs = left.as_millis().div_ceil(1000).max(1);
            answer = answer.retry_after(u64::try_from(secs).unwrap_or(u64::MAX));
        }
        Err(answer)
    }
}
