//! The order service's calls to its dependencies, each through the client
//! stack written out in [`Upstream::new`], outermost first: deadline →
//! retry → circuit breaker → per-attempt timeout → deadline propagation →
//! request id → the caller's credential (a service JWT or the API key, by
//! `--service-auth`; with `mtls`, none) → hyper-util client. With
//! `--user-transport grpc` the user service is called over gRPC instead,
//! through the same stack in its gRPC form, written out in [`grpc`].
//!
//! With `--tls-dir` only the innermost client changes: hyper-util over
//! mutual TLS, presenting the order service's certificate and accepting
//! only the SPIFFE ID of the service called ([`crate::tls::client`]), one
//! client configuration per called service. The URLs are then `https://`
//! and must be; plaintext URLs are refused when the clients are built,
//! as `https://` ones are without `--tls-dir`.

mod absent;
pub mod grpc;

use std::sync::Arc;

use axum::http::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_circuit::breaker::{Breaker, BreakerConfigError};
use tower_circuit::client::{
    BuildError, ClientError, DEFAULT_MAX_BODY, ServiceClient, WireService, wire,
};
use tower_circuit::grpc::retry::{GrpcMethods, GrpcRetryClassifier};
use tower_circuit::retry::{RetryConfigError, RetryLayer, RetryStats};
use tower_circuit::timeout::{DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer};
use tower_jwt_service_auth::api_key::ApiKeyClientLayer;
use tower_jwt_service_auth::jwt::client::SignTokenLayer;
use tower_jwt_service_auth::jwt::sign::Signer;

use self::absent::AbsentCopies;
pub(crate) use self::absent::CopyLookups;
use super::UserTransport;
use super::resilience::Resilience;
use super::store::{CachedUser, OrderStore, OrderUser};
use crate::api::ApiError;
use crate::auth::{
    KeyMaterialError, Keys, NOTIFICATION_SERVICE, ORDER_SERVICE, ServiceAuth, USER_SERVICE,
};
use crate::telemetry::request_id;
use crate::telemetry::{Escaped, Metrics};
use crate::tls::client::{ALPN_H2, ALPN_HTTP1};
use crate::tls::identity::TlsDir;
use crate::tls::server::TlsSetupError;

/// One dependency: its client over its stack, and the handles of the
/// stack's breaker and retry layer, for `/health`, `/metrics` and tests.
#[derive(Debug, Clone)]
pub struct Dependency<C = ServiceClient> {
    /// The client every call goes through.
    pub client: C,
    breaker: Breaker,
    retry: Retries,
}

impl<C> Dependency<C> {
    /// The breaker guarding the dependency.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The retry layer's counts.
    pub fn retry_stats(&self) -> RetryStats {
        match &self.retry {
            Retries::Http(retry) => retry.stats(),
            Retries::Grpc(retry) => retry.stats(),
        }
    }
}

/// How the order service says who it is on each call, by
/// `--service-auth`: a service token per target, its API key, or neither
/// (with `mtls`, its client certificate does).
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    signer: Option<Signer>,
    api_key: Option<ApiKeyClientLayer>,
}

impl Credentials {
    /// The order service's credentials in `keys`' mode.
    fn of(keys: &Keys) -> Result<Credentials, UpstreamError> {
        let signer = match keys.service_auth() {
            ServiceAuth::Jwt => Some(keys.signer(ORDER_SERVICE).map_err(UpstreamError::Keys)?),
            ServiceAuth::ApiKey | ServiceAuth::Mtls => None,
        };
        let api_key = keys
            .api_key_ring()
            .map(|ring| ring.client_layer(ORDER_SERVICE))
            .transpose()
            .map_err(UpstreamError::Keys)?;
        Ok(Credentials { signer, api_key })
    }

    /// With tokens: the layer signing them for `audience`.
    pub(crate) fn token_for(&self, audience: &str) -> Option<SignTokenLayer> {
        let signer = self.signer.clone()?;
        Some(SignTokenLayer::new(signer, audience))
    }

    /// With API keys: the layer sending the newest one.
    pub(crate) fn api_key(&self) -> Option<ApiKeyClientLayer> {
        self.api_key.clone()
    }
}

/// The retry layer of a dependency's stack, in the form of its transport.
#[derive(Debug, Clone)]
enum Retries {
    Http(RetryLayer),
    Grpc(RetryLayer<GrpcRetryClassifier, GrpcMethods>),
}

/// How the order service reaches the user service (`--user-transport`).
#[derive(Debug, Clone)]
pub enum UserClient {
    /// REST: `GET /users/{id}`, JSON.
    Http(ServiceClient),
    /// gRPC: `user.UserService/GetUser`.
    Grpc(grpc::GrpcUsers),
}

/// The clients of the user and notification services.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The user service.
    pub users: Dependency<UserClient>,
    /// The notification service.
    pub notifications: Dependency,
    /// Users found without a kept copy a moment ago.
    absent: AbsentCopies,
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
    /// The gRPC client's address.
    Grpc(String),
    /// The TLS client configuration.
    Tls(TlsSetupError),
    /// A URL whose scheme does not match how the service calls: `https://`
    /// with `--tls-dir`, `http://` without.
    Scheme {
        /// The service the URL is for.
        service: &'static str,
        /// The URL.
        url: String,
        /// Whether the service calls over TLS.
        tls: bool,
    },
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Build(e) => write!(f, "{e}"),
            UpstreamError::Breaker(e) => write!(f, "breaker: {e}"),
            UpstreamError::Retry(e) => write!(f, "retry: {e}"),
            UpstreamError::Keys(e) => write!(f, "{e}"),
            UpstreamError::Grpc(e) => write!(f, "gRPC client: {e}"),
            UpstreamError::Tls(e) => write!(f, "TLS client: {e}"),
            UpstreamError::Scheme {
                service,
                url,
                tls: true,
            } => write!(
                f,
                "{service} is called over mutual TLS (--tls-dir), so its URL must be \
                 https://, not {}",
                Escaped(url.as_str())
            ),
            UpstreamError::Scheme {
                service,
                url,
                tls: false,
            } => write!(
                f,
                "{service}'s URL must be http://, not {} (https:// needs --tls-dir, the \
                 certificates to call with)",
                Escaped(url.as_str())
            ),
        }
    }
}

impl std::error::Error for UpstreamError {}

impl Upstream {
    /// Clients for the services at `user_url` (over `user_transport`) and
    /// `notification_url`, each through the whole client stack; breaker
    /// changes and retries are counted in `metrics`. With `tls`, every
    /// call is over mutual TLS (`https://` URLs only), without it over
    /// plaintext (`http://` only).
    pub fn new(
        user_url: &str,
        notification_url: &str,
        user_transport: UserTransport,
        resilience: &Resilience,
        keys: &Keys,
        metrics: &Metrics,
        tls: Option<&TlsDir>,
    ) -> Result<Upstream, UpstreamError> {
        check_scheme(USER_SERVICE, user_url, tls.is_some())?;
        check_scheme(NOTIFICATION_SERVICE, notification_url, tls.is_some())?;
        let credentials = Credentials::of(keys)?;
        let breaker = |name: &'static str| {
            let on_change = metrics.clone();
            let breaker = Breaker::builder(name)
                .config(resilience.breaker())
                .on_state_change(move |c| on_change.transition(&c.name, c.from, c.to))
                .build()
                .map_err(UpstreamError::Breaker)?;
            if resilience.no_breaker {
                breaker.disable();
            }
            Ok::<_, UpstreamError>(breaker)
        };
        let rest = |name: &'static str, url: &str, breaker: &Breaker| {
            let on_retry = metrics.clone();
            let retry = resilience
                .retry(name)
                .on_retry(move |e| on_retry.retry(&e.name, &e.reason))
                .build()
                .map_err(UpstreamError::Retry)?;
            let http = rest_client(name, tls)?;
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
                // Who is calling, by `--service-auth`: a service token
                // addressed to `name` (signed once, reused until 80 % of
                // its lifetime), or the API key, or neither (the client
                // certificate says it).
                .option_layer(credentials.token_for(name))
                .option_layer(credentials.api_key())
                // hyper-util (plaintext or mutual TLS), reading the whole
                // body (at most 4 MiB) inside the attempt's timeout.
                .service(http);
            let client = ServiceClient::new(name, url, stack).map_err(UpstreamError::Build)?;
            Ok::<_, UpstreamError>((client, retry))
        };
        let breaker_of_users = breaker(USER_SERVICE)?;
        let users = match user_transport {
            UserTransport::Http => {
                let (client, retry) = rest(USER_SERVICE, user_url, &breaker_of_users)?;
                Dependency {
                    client: UserClient::Http(client),
                    breaker: breaker_of_users,
                    retry: Retries::Http(retry),
                }
            }
            UserTransport::Grpc => {
                let config = tls
                    .map(|tls| client_config(tls, USER_SERVICE, ALPN_H2))
                    .transpose()?;
                let (client, retry) = grpc::users(
                    user_url,
                    resilience,
                    &breaker_of_users,
                    &credentials,
                    metrics,
                    config,
                )?;
                Dependency {
                    client: UserClient::Grpc(client),
                    breaker: breaker_of_users,
                    retry: Retries::Grpc(retry),
                }
            }
        };
        let breaker_of_notifications = breaker(NOTIFICATION_SERVICE)?;
        let (client, retry) = rest(
            NOTIFICATION_SERVICE,
            notification_url,
            &breaker_of_notifications,
        )?;
        Ok(Upstream {
            users,
            notifications: Dependency {
                client,
                breaker: breaker_of_notifications,
                retry: Retries::Http(retry),
            },
            absent: AbsentCopies::default(),
        })
    }

    /// Clients for `--without-layers` (measuring what the stack costs):
    /// straight through hyper-util, with no deadline, retry, breaker,
    /// timeout, request id or token. The breaker and retry handles exist
    /// for `/health` and `/metrics` but see no calls.
    pub(crate) fn without_layers(
        user_url: &str,
        notification_url: &str,
        user_transport: UserTransport,
    ) -> Result<Upstream, UpstreamError> {
        // Plaintext only: what it measures is the layers, and TLS is not
        // one of them.
        check_scheme(USER_SERVICE, user_url, false)?;
        check_scheme(NOTIFICATION_SERVICE, notification_url, false)?;
        let handles = |name: &'static str| {
            let breaker = Breaker::builder(name)
                .build()
                .map_err(UpstreamError::Breaker)?;
            let retry = RetryLayer::builder(name)
                .max_retries(0)
                .build()
                .map_err(UpstreamError::Retry)?;
            Ok::<_, UpstreamError>((breaker, Retries::Http(retry)))
        };
        let rest = |name: &'static str, url: &str| {
            let http = Client::builder(TokioExecutor::new()).build_http();
            ServiceClient::new(name, url, wire(http, DEFAULT_MAX_BODY))
                .map_err(UpstreamError::Build)
        };
        let (breaker, retry) = handles(USER_SERVICE)?;
        let client = match user_transport {
            UserTransport::Http => UserClient::Http(rest(USER_SERVICE, user_url)?),
            UserTransport::Grpc => UserClient::Grpc(grpc::bare(user_url)?),
        };
        let users = Dependency {
            client,
            breaker,
            retry,
        };
        let (breaker, retry) = handles(NOTIFICATION_SERVICE)?;
        Ok(Upstream {
            users,
            notifications: Dependency {
                client: rest(NOTIFICATION_SERVICE, notification_url)?,
                breaker,
                retry,
            },
            absent: AbsentCopies::default(),
        })
    }

    /// What the look-ups of kept copies found, for `/metrics`.
    pub(crate) fn copy_lookups(&self) -> CopyLookups {
        self.absent.lookups()
    }

    /// The user `id`: fresh from the user service when it answers (the copy
    /// is kept), else the last copy kept. A user the service does not know
    /// is a 404; no service and no copy is a 503, with `Retry-After` while
    /// the breaker is open (for a user found without a copy a moment ago,
    /// without asking the database again). The same over REST and gRPC.
    pub async fn user(&self, store: &OrderStore, id: i64) -> Result<OrderUser, ApiError> {
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "user_not_found",
                format!("user not found: {id}"),
            )
        };
        let fetched = match &self.users.client {
            UserClient::Http(client) => {
                #[derive(Deserialize, Serialize)]
                struct RemoteUser {
                    id: i64,
                    name: String,
                    email: String,
                }
                match client.get::<RemoteUser>(&format!("/users/{id}")).await {
                    Ok(user) => Ok(CachedUser {
                        id: user.id,
                        name: user.name,
                        email: user.email,
                    }),
                    Err(ClientError::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                        return Err(not_found());
                    }
                    Err(e) => Err(LookupError::Http(e)),
                }
            }
            UserClient::Grpc(users) => match users.get(id).await {
                Ok(user) => Ok(CachedUser {
                    id: i64::from(user.id),
                    name: user.name,
                    email: user.email,
                }),
                Err(status) if status.code() == tonic::Code::NotFound => return Err(not_found()),
                Err(status) => Err(LookupError::Grpc(status)),
            },
        };
        let error = match fetched {
            Ok(copy) => {
                match store.cache_user(&copy).await {
                    Ok(()) => self.absent.kept(id),
                    // The order can go on; only the fallback copy is stale.
                    Err(e) => {
                        tracing::warn!(error = %Escaped(&e), user = id, "could not keep a copy of the user")
                    }
                }
                return Ok(OrderUser {
                    name: copy.name,
                    email: copy.email,
                    source: "live".to_owned(),
                });
            }
            Err(error) => error,
        };
        // A user found without a copy a moment ago is refused without
        // asking the database again (see `absent`).
        let copy = if self.absent.known_absent(id) {
            None
        } else {
            let lookup = self.absent.lookup(id);
            let copy = store.cached_user(id).await?;
            match copy {
                Some(_) => self.absent.found(lookup),
                None => self.absent.missing(lookup),
            }
            copy
        };
        if let Some(copy) = copy {
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
        let mut answer = match error.refused() {
            Some(what) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "user_service_rejected",
                format!("the user service refused the lookup ({what})"),
            ),
            None => ApiError::new(
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

/// The innermost REST client for calls to `service`: hyper-util over
/// mutual TLS with `tls`, else over plaintext.
fn rest_client(service: &str, tls: Option<&TlsDir>) -> Result<WireService, UpstreamError> {
    let builder = Client::builder(TokioExecutor::new());
    Ok(match tls {
        Some(tls) => {
            let config = client_config(tls, service, ALPN_HTTP1)?;
            wire(
                builder.build(crate::tls::client::connector(config)),
                DEFAULT_MAX_BODY,
            )
        }
        None => wire(builder.build_http(), DEFAULT_MAX_BODY),
    })
}

/// The client configuration for calls to `service`: expecting its SPIFFE
/// ID in the trust domain of the caller's own certificate.
fn client_config(
    tls: &TlsDir,
    service: &str,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, UpstreamError> {
    use crate::tls::client;
    let expect = client::expected(tls, service).map_err(UpstreamError::Tls)?;
    client::client_config(tls, expect, alpn).map_err(UpstreamError::Tls)
}

/// Refuses a URL for `service` whose scheme is not the one its calls
/// speak.
fn check_scheme(service: &'static str, url: &str, tls: bool) -> Result<(), UpstreamError> {
    let want = if tls { "https://" } else { "http://" };
    if url.starts_with(want) {
        return Ok(());
    }
    Err(UpstreamError::Scheme {
        service,
        url: url.to_owned(),
        tls,
    })
}

/// The TLS error under `e`, if a handshake failed.
fn tls_refusal<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // io::Error hides the error it wraps from `source` (and the TLS
        // stream's io::Error is itself wrapped in another).
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// Why a lookup of a user failed, over either transport.
#[derive(Debug)]
enum LookupError {
    Http(ClientError),
    Grpc(tonic::Status),
}

impl LookupError {
    /// Whether the caller's own deadline ended the lookup.
    fn is_deadline(&self) -> bool {
        match self {
            LookupError::Http(e) => e.is_deadline(),
            LookupError::Grpc(status) => grpc::deadline_spent(status),
        }
    }

    /// How long the breaker stays open, if it refused the lookup.
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            LookupError::Http(e) => e.retry_after(),
            LookupError::Grpc(status) => grpc::retry_after(status),
        }
    }

    /// What the user service said when it refused the lookup itself (our
    /// request was at fault, not its health).
    fn refused(&self) -> Option<String> {
        match self {
            LookupError::Http(ClientError::Status { status, .. }) if status.is_client_error() => {
                Some(status.to_string())
            }
            LookupError::Http(_) => None,
            LookupError::Grpc(status) => {
                grpc::refused(status).then(|| format!("{:?}", status.code()))
            }
        }
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // hyper-util's error says only "client error (Connect)"; a
            // refused handshake's reason (a server that is not the
            // service meant) is further down, and is what an operator
            // needs. (tonic's status already carries it.)
            LookupError::Http(e) => match tls_refusal(e) {
                Some(why) => write!(f, "{e}: {why}"),
                None => write!(f, "{e}"),
            },
            LookupError::Grpc(status) => write!(f, "{}", grpc::describe(status)),
        }
    }
}
