//! The server side shared by the three services: the layer stack, serving
//! under connection limits with graceful shutdown ([`mod@serve`]), and waiting
//! for SIGINT or SIGTERM.
//!
//! Stack, outermost first: gRPC answers for gRPC requests (any HTTP-shaped
//! refusal from inside becomes a `grpc-status`, see [`grpc_errors`]) →
//! request id (accept or make `x-request-id`, echo it) → trace (a span per request carrying the id) → request-id scope
//! (for outbound calls) → metrics → catch-panic → deadline (the caller's
//! `x-request-budget-ms`, capped by this server's own) → body limit → JWT
//! verification → fault injection (off by default) → per-route permission
//! (on each route) → handler. `/health` and `/metrics` sit outside the
//! verification; unknown routes and methods answer JSON 404 and 405.
//! [`stack`] writes the layers in this order.

use std::any::Any;
use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_circuit::timeout::ServerDeadlineLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tower_jwt_service_auth::api_key::ApiKeyLayer;
use tower_jwt_service_auth::jwt::server::VerifyLayer;
use tower_jwt_service_auth::mtls::PeerAuthLayer;
use tracing::{Level, Span};

use crate::api::{self, ApiError};
use crate::auth::Keys;
use crate::fault::Faults;
use crate::server::grpc_errors::GrpcErrorsLayer;
use crate::telemetry::request_id::{self, MakeId};
use crate::telemetry::{Escaped, Metrics};
use crate::tls::identity::TlsDir;
use crate::tls::reload::{self, ReloadSettings};
use crate::tls::server::{TlsListener, server_config};

pub mod grpc_errors;
pub mod serve;

/// The largest request body accepted: 1 MiB, then 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// The longest any request may take on a server unless the caller's budget
/// is shorter; longer than the order flow's own client deadline.
pub const SERVER_DEADLINE: Duration = Duration::from_secs(20);

/// The least budget a caller may send (`x-request-budget-ms`): with less,
/// a request is answered 504 at once, without calling anyone, and the
/// order service's clients do not send a call with less time left either.
/// A commit and a call to another service do not fit in fewer
/// milliseconds on loopback, let alone across a network.
pub const MIN_BUDGET: Duration = Duration::from_millis(10);

/// How long graceful shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The layer that authenticates callers, by `--service-auth`: it sits
/// where [`stack`] verifies, and each inserts the caller's
/// [`ServiceIdentity`](tower_jwt_service_auth::jwt::ServiceIdentity) with
/// its row of [`permissions_of`](crate::auth::permissions_of), so the
/// routes' permission checks and the handlers are the same in every mode.
#[derive(Debug, Clone)]
pub enum ServerAuth {
    /// Service JWTs (bound to the client certificate over mutual TLS).
    Jwt(VerifyLayer),
    /// API keys (bound to the client certificate over mutual TLS).
    ApiKey(ApiKeyLayer),
    /// The client certificate alone.
    Mtls(PeerAuthLayer),
}

impl ServerAuth {
    /// The layer of `keys`' mode for the service `service`.
    pub fn new(service: &str, keys: &Keys) -> ServerAuth {
        if let Some(ring) = keys.api_key_ring() {
            ServerAuth::ApiKey(ring.server_layer())
        } else if let Some(layer) = keys.peer_auth_layer() {
            ServerAuth::Mtls(layer)
        } else {
            ServerAuth::Jwt(keys.verify_layer(service))
        }
    }

    /// The JWT layer, with `--service-auth jwt`.
    pub fn jwt(&self) -> Option<&VerifyLayer> {
        match self {
            ServerAuth::Jwt(layer) => Some(layer),
            _ => None,
        }
    }

    /// The API-key layer, with `--service-auth api-key`.
    pub fn api_key(&self) -> Option<&ApiKeyLayer> {
        match self {
            ServerAuth::ApiKey(layer) => Some(layer),
            _ => None,
        }
    }

    /// The client-certificate layer, with `--service-auth mtls`.
    pub fn mtls(&self) -> Option<&PeerAuthLayer> {
        match self {
            ServerAuth::Mtls(layer) => Some(layer),
            _ => None,
        }
    }
}

/// What every service's stack holds besides its routes: who it is, how it
/// authenticates callers, its metrics and its fault settings.
#[derive(Debug, Clone)]
pub struct ServerParts {
    /// The service's name.
    pub service: &'static str,
    /// Its authentication layer (shared, so its counters are one).
    pub auth: ServerAuth,
    /// Its metrics registry.
    pub metrics: Metrics,
    /// Its fault injection settings.
    pub faults: Faults,
    /// The connection limits its serve loop enforces.
    pub limits: serve::Limits,
    /// With `Some`, it serves over mutual TLS with this directory's CA and
    /// its own certificate (`--tls-dir`, see
    /// [`crate::tls::server::server_config`]): every client presents a
    /// certificate from the CA, and each request carries the client's
    /// [`PeerIdentity`](tower_jwt_service_auth::mtls::PeerIdentity).
    pub tls: Option<TlsDir>,
}

impl ServerParts {
    /// The parts of the service `service` with `keys` and `faults`.
    pub fn new(service: &'static str, keys: &Keys, faults: Faults) -> ServerParts {
        if faults.is_on() {
            tracing::warn!(
                service,
                error_rate = faults.error_rate(),
                latency = ?faults.latency(),
                "fault injection is ON: authenticated requests will be failed or delayed on purpose"
            );
        }
        ServerParts {
            service,
            auth: ServerAuth::new(service, keys),
            metrics: Metrics::new(),
            faults,
            limits: serve::Limits::default(),
            tls: None,
        }
    }
}

/// Puts the common stack around a service's routes: `protected` behind the
/// verifier, `public` (health, metrics) before it.
///
/// The layers read outermost first, as a request meets them. The shared
/// part wraps the whole router (so `/health`, `/metrics` and the JSON
/// 404/405 answers get an id, a span, metrics and a deadline too);
/// verification and fault injection wrap the protected routes only, since
/// an unauthenticated probe must reach `/health` and an unknown path must
/// answer 404, not 401. The gRPC translation comes first, outside every
/// layer that can refuse (and outside metrics and traces, which so record
/// the refusal's own status).
pub fn stack(protected: Router, public: Router, ops: &ServerParts) -> Router {
    let service = ops.service;
    let shared = ServiceBuilder::new()
        .layer(GrpcErrorsLayer::new())
        .layer(request_id::sanitize_layer())
        .layer(SetRequestIdLayer::new(request_id::HEADER, MakeId))
        .layer(PropagateRequestIdLayer::new(request_id::HEADER))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |req: &axum::http::Request<Body>| span(service, req))
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(request_id::ScopeLayer)
        .layer(ops.metrics.http_layer())
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(ServerDeadlineLayer::new(SERVER_DEADLINE).min_budget(MIN_BUDGET))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let verified = ServiceBuilder::new()
        // Exactly one of the three, by `--service-auth`.
        .option_layer(ops.auth.jwt().cloned())
        .option_layer(ops.auth.api_key().cloned())
        .option_layer(ops.auth.mtls().cloned())
        .layer(ops.faults.layer());
    protected
        .layer(verified)
        .merge(public)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(shared)
}

/// `routes` and `public` with none of the stack, for `--without-layers`
/// (measuring what the stack costs): no verification, tracing, metrics,
/// deadline or request ids; the body limit stays, as axum has one anyway.
///
/// The per-route permission checks stay on the routes and read the
/// caller's identity, which the verifier would have set: here, and only
/// here, every request is taken for `caller` with its own permissions
/// (the API gateway for the user and order services, the order service for
/// the notification service), so the handlers run as they do in the
/// layered run.
pub(crate) fn without_layers(routes: Router, public: Router, caller: &'static str) -> Router {
    let identity = tower_jwt_service_auth::jwt::verify::ServiceIdentity {
        service: caller.to_owned(),
        permissions: crate::auth::permissions_of(caller)
            .unwrap_or_default()
            .iter()
            .map(|p| p.to_string())
            .collect(),
        token_id: None,
        expires_at: std::time::SystemTime::now() + Duration::from_secs(365 * 24 * 3600),
    };
    routes
        .layer(axum::Extension(identity))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .merge(public)
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::method_not_allowed)
}

fn span(service: &'static str, req: &axum::http::Request<Body>) -> Span {
    let id = req
        .headers()
        .get(&request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "request",
        service,
        // The method is a token (no spaces or controls, checked by hyper);
        // the path and the id are the client's text: escaped (`?`), so a
        // percent-decoded or odd byte cannot forge a log line.
        method = %req.method(),
        path = ?req.uri().path(),
        request_id = ?id,
    )
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %Escaped(&what), "a handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the service failed while answering; see its log",
    )
    .into_response()
}

/// A service's state, as everything that starts a service uses it (the
/// command line, [`crate::harness`] and so the tests): one pattern for
/// the three services.
pub trait ServiceState: Clone + Send + 'static {
    /// The service: its routes in the common stack ([`stack`]).
    fn app(&self) -> Router;

    /// What its stack holds: name, verifier, metrics, limits, TLS.
    fn parts(&self) -> &ServerParts;

    /// Serves `app` (usually [`ServiceState::app`]) on `listener` until
    /// `shutdown`, with whatever the service runs beside it.
    fn run(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

/// Serves `app` on `listener` (over mutual TLS if `ops.tls` is set, its
/// certificate reloaded as it is renewed: [`reload::run`]) under
/// `ops.limits` until `shutdown` completes, then stops accepting and lets
/// in-flight requests finish, for at most [`SHUTDOWN_GRACE`] (see
/// [`serve::serve`]).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    ops: &ServerParts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let upkeep = tokio::spawn(ops.metrics.clone().upkeep());
    let result = match &ops.tls {
        Some(tls) => {
            let config = server_config(tls).map_err(io::Error::other)?;
            let listener = TlsListener::new(listener, config)
                .with_metrics(ops.metrics.clone(), ops.limits.header_read_timeout);
            // One task per identity: the order service calls with the
            // same one, so its client side rotates with it.
            let rotation = tokio::spawn(reload::run(
                tls.identity().clone(),
                ReloadSettings::default(),
                ops.metrics.clone(),
            ));
            let result = serve::serve(listener, app, ops.limits, shutdown).await;
            rotation.abort();
            result
        }
        None => serve::serve(listener, app, ops.limits, shutdown).await,
    };
    upkeep.abort();
    result
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM. From then on a second signal
/// ends the process at once, wherever shutdown is, with exit code 128 plus
/// the signal's number (130 for SIGINT, 143 for SIGTERM).
pub async fn signal() {
    let mut signals = Signals::new();
    let first = signals.next().await;
    tracing::info!(
        signal = first.name(),
        "shutting down: no new connections, finishing requests in flight; \
         signal again to stop at once"
    );
    tokio::spawn(async move {
        let second = signals.next().await;
        tracing::error!(
            signal = second.name(),
            "second signal: exiting at once, requests in flight are dropped"
        );
        std::process::exit(second.exit_code());
    });
}

/// The signals that stop a service.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Interrupt,
    Terminate,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "SIGINT",
            Stop::Terminate => "SIGTERM",
        }
    }

    /// The shell's convention for a process ended by the signal.
    fn exit_code(self) -> i32 {
        match self {
            Stop::Interrupt => 128 + 2,
            Stop::Terminate => 128 + 15,
        }
    }
}

/// SIGINT and SIGTERM, listened for once so that none is lost between the
/// first and the second.
#[derive(Debug)]
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        Signals {
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
        }
    }

    #[cfg(not(unix))]
    fn new() -> Signals {
        Signals {}
    }

    /// The next stop signal.
    #[cfg(unix)]
    async fn next(&mut self) -> Stop {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
            if let Some(s) = s
                && s.recv().await.is_some()
            {
                return;
            }
            std::future::pending().await
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => Stop::Interrupt,
            () = recv(&mut self.terminate) => Stop::Terminate,
        }
    }

    /// The next Ctrl-C.
    #[cfg(not(unix))]
    async fn next(&mut self) -> Stop {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        Stop::Interrupt
    }
}

/// The `/health` answer of a service without dependencies; with
/// `--tls-dir`, a `tls` object tells the certificate it presents
/// ([`tls_health`]).
pub fn health(ops: &ServerParts) -> serde_json::Value {
    let mut body = serde_json::json!({ "status": "ok", "service": ops.service });
    if let Some(tls) = &ops.tls {
        body["tls"] = tls_health(tls);
    }
    if ops.faults.is_on() {
        body["faults"] = serde_json::json!({
            "errorRate": ops.faults.error_rate(),
            "latencyMs": ops.faults.latency().as_millis() as u64,
        });
    }
    body
}

/// The certificate a service presents, as `/health` shows it:
/// `spiffeId`, `serial` (hex), `notAfter` (RFC 3339) and
/// `expiresInSeconds` (negative once it has expired).
pub fn tls_health(tls: &TlsDir) -> serde_json::Value {
    let current = tls.identity().current();
    serde_json::json!({
        "spiffeId": current.spiffe_id.as_str(),
        "serial": current.serial,
        "notAfter": crate::tls::rfc3339(current.not_after),
        "expiresInSeconds": reload::signed_secs_until(current.not_after),
    })
}

/// Reads what every service reports at a scrape into its registry:
/// authentication counters and, with `--tls-dir`, the certificate's
/// seconds to expiry.
pub fn observe(ops: &ServerParts) {
    ops.metrics.observe_auth(&ops.auth);
    if let Some(tls) = &ops.tls {
        ops.metrics.observe_tls(tls);
    }
}

/// The `/metrics` answer: Prometheus text.
pub fn metrics_response(text: String) -> Response<Body> {
    let mut res = Response::new(Body::from(text));
    res.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// The public routes of a service without dependencies: `/health` and
/// `/metrics` (request figures and authentication failures).
pub fn public_routes(ops: &ServerParts) -> Router {
    let health_ops = ops.clone();
    let metrics_ops = ops.clone();
    Router::new()
        .route(
            "/health",
            axum::routing::get(move || {
                let ops = health_ops.clone();
                async move { axum::Json(health(&ops)) }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let ops = metrics_ops.clone();
                async move {
                    observe(&ops);
                    metrics_response(ops.metrics.render())
                }
            }),
        )
}
