//! The order service's calls to its dependencies, each through the client
//! stack: deadline → retry → circuit breaker → per-attempt timeout →
//! deadline propagation → JWT signing → hyper-util client.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tower_circuit::client::{ClientError, ServiceClient};
use tower_jwt_service_auth::jwt::client::SignTokenLayer;

use super::resilience::Resilience;
use super::store::{CachedUser, OrderStore, OrderUser};
use crate::api::ApiError;
use crate::auth::{KeyMaterialError, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, USER_SERVICE};
use crate::telemetry::request_id;
use crate::telemetry::{Escaped, Metrics};
use tower_circuit::breaker::Breaker;

/// The clients of the user and notification services.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The user service.
    pub users: ServiceClient,
    /// The notification service.
    pub notifications: ServiceClient,
}

/// An upstream client could not be built.
#[derive(Debug)]
pub enum UpstreamError {
    /// A bad URL or setting.
    Build(tower_circuit::client::BuildError),
    /// No key to sign with.
    Keys(KeyMaterialError),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Build(e) => write!(f, "{e}"),
            UpstreamError::Keys(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl Upstream {
    /// Clients for the services at `user_url` and `notification_url`.
    pub fn new(
        user_url: &str,
        notification_url: &str,
        resilience: &Resilience,
        keys: &Keys,
        metrics: &Metrics,
    ) -> Result<Upstream, UpstreamError> {
        let signer = keys.signer(ORDER_SERVICE).map_err(UpstreamError::Keys)?;
        let client = |name: &'static str, url: &str| {
            let (on_change, on_retry) = (metrics.clone(), metrics.clone());
            let breaker = Breaker::builder(name)
                .config(resilience.breaker())
                .on_state_change(move |c| on_change.transition(&c.name, c.from, c.to));
            let retry = resilience
                .retry(name)
                .on_retry(move |e| on_retry.retry(&e.name, &e.reason));
            let builder = ServiceClient::builder(name, url)
                .breaker_builder(breaker)
                .retry(retry)
                .timeouts(resilience.timeouts())
                .deadline(resilience.call_deadline)
                .min_budget(crate::server::MIN_BUDGET);
            let builder = if resilience.bypass_layers {
                builder.bypass_layers()
            } else {
                builder
                    .layer(request_id::outbound_layer())
                    .layer(SignTokenLayer::new(signer.clone(), name))
            };
            let client = builder.build().map_err(UpstreamError::Build)?;
            if resilience.no_breaker {
                client.breaker().disable();
            }
            Ok(client)
        };
        Ok(Upstream {
            users: client(USER_SERVICE, user_url)?,
            notifications: client(NOTIFICATION_SERVICE, notification_url)?,
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
        let error = match self.users.get::<RemoteUser>(&format!("/users/{id}")).await {
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
