//! Prometheus metrics, one registry per service.
//!
//! Each service records through the `metrics` facade into its own
//! `PrometheusRecorder` (not a process-wide one), so the three services of
//! `all` mode, and the many services a test binary starts, keep separate
//! figures. Request counts and latencies are recorded as requests finish;
//! breaker, retry-budget, authentication and outbox figures are read from
//! their owners' counters when `/metrics` is scraped.
//!
//! Families (names follow Prometheus conventions: base units, `_total`
//! for counters, `_seconds` for durations):
//!
//! | family | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `route`, `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `auth_failures_total` | counter | `reason` |
//! | `auth_verified_total` (callers let through, in any `--service-auth` mode), `auth_cache_hits_total` (tokens only) | counter | |
//! | `circuit_breaker_state` | gauge (1 for the current state) | `breaker`, `state` |
//! | `circuit_breaker_transitions_total` | counter | `breaker`, `from`, `to` |
//! | `circuit_breaker_rejected_calls_total` | counter | `breaker` |
//! | `circuit_breaker_failure_rate`, `circuit_breaker_window_calls` | gauge | `breaker` |
//! | `retry_attempts_total` | counter | `target`, `reason` |
//! | `retry_budget_exhausted_total` | counter | `target` |
//! | `outbox_pending_notifications` | gauge | |
//! | `outbox_deliveries_total` | counter | `result` |
//! | `user_copy_lookups_total` (`found`, `missing`: the database had none, `remembered`: known to be missing, not asked) | counter | `result` |
//! | `notifications_accepted_total` (`new`, `duplicate`: a redelivery, `conflict`) | counter | `result` |
//! | `tls_handshakes_total` | counter | |
//! | `tls_handshake_failures_total` | counter | `reason` |
//! | `tls_certificate_expiry_seconds` | gauge | |
//! | `tls_certificate_reloads_total` | counter | `result` |
//! | `nats_connected` | gauge (1 connected, 0 not) | |
//! | `nats_publish_total` | counter | `result` |
//! | `nats_consumed_total` | counter | `result` |
//! | `notification_consumer_lag` | gauge | |
//!
//! Every label value comes from a bounded set, whatever clients send: a
//! `method` is one of the nine standard methods or `other`, a `route` is a
//! route template of the service or `unmatched`, a `status` is a three-digit
//! code; auth `reason`s are the verifier's fixed codes; `breaker` and
//! `target` are the configured client names; `reason`, `state`, `from`,
//! `to` and `result` are fixed words (a TLS handshake's `reason` is read
//! from the error's kind, [`HandshakeFailure`], never from the peer's
//! text). The `tls_` families appear with `--tls-dir`, the `nats_` ones and
//! `notification_consumer_lag` with `--notify-via nats`: a publish's
//! `result` is `published`, `duplicate` (the stream had its message id),
//! `failed` or `rejected` (open circuit); a consumed message's is `new`,
//! `duplicate`, `conflict`, `malformed` or `retry` (database error, not
//! acked). So `/metrics` cannot be grown by
//! requests.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::sync::RwLock;

use axum::extract::MatchedPath;
use axum::http::{Method, Request, Response};
use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_circuit::breaker::{BreakerStats, CircuitState};
use tower_circuit::retry::{RetryReason, RetryStats};
use tower_jwt_service_auth::{api_key, mtls};

use crate::server::ServerAuth;
use crate::tls::handshakes::HandshakeFailure;
use crate::tls::identity::TlsDir;
use crate::tls::reload::ReloadResult;

/// Latency buckets in seconds: 0.5 ms to 10 s, dense where a service
/// answers, so `histogram_quantile` gives useful P95 and P99.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every breaker state, for the one-hot `circuit_breaker_state` gauge.
const STATES: [CircuitState; 5] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
    CircuitState::ForcedOpen,
    CircuitState::Disabled,
];

/// One service's metrics registry. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new();
        // Only an empty bucket list is refused, and this one is not empty.
        let builder = builder
            .set_buckets(BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let metrics = Metrics {
            inner: Arc::new(Inner { recorder, handle }),
        };
        metrics.record(describe);
        metrics
    }

    /// Runs `f` with this registry as the `metrics` macros' recorder.
    pub fn record<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&self.inner.recorder, f)
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.inner.handle.render()
    }

    /// Folds recorded histogram samples into their buckets; run
    /// periodically so an unscraped service does not hold raw samples.
    pub async fn upkeep(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            self.inner.handle.run_upkeep();
        }
    }

    /// The layer that counts and times requests.
    pub fn http_layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            metrics: self.clone(),
        }
    }

    /// Reads the authenticating layer's counters into the registry: the
    /// same families whichever `--service-auth` (`auth_verified_total`
    /// counts callers let through; `auth_failures_total` by the layer's
    /// own reasons, e.g. `expired`, `wrong_key` or `unknown_peer`).
    pub fn observe_auth(&self, auth: &ServerAuth) {
        let (verified, cache_hits, rejected) = match auth {
            ServerAuth::Jwt(verify) => {
                let stats = verify.stats();
                (stats.verified, Some(stats.cache_hits), stats.rejected)
            }
            ServerAuth::ApiKey(layer) => {
                let stats = layer.stats();
                let rejected = api_key::Rejection::ALL
                    .iter()
                    .map(|r| (r.reason(), stats.rejected(*r)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (stats.accepted(), None, rejected)
            }
            ServerAuth::Mtls(layer) => {
                let stats = layer.stats();
                let rejected = mtls::Rejection::ALL
                    .iter()
                    .map(|r| (r.reason(), stats.rejected(*r)))
                    .filter(|(_, n)| *n > 0)
                    .collect();
                (stats.authenticated(), None, rejected)
            }
        };
        self.record(|| {
            counter!("auth_verified_total").absolute(verified);
            if let Some(hits) = cache_hits {
                counter!("auth_cache_hits_total").absolute(hits);
            }
            for (reason, n) in rejected {
                counter!("auth_failures_total", "reason" => reason).absolute(n);
            }
        });
    }

    /// Reads a client's breaker and retry counters into the registry.
    pub fn observe_dependency<C>(&self, dependency: &crate::order::upstream::Dependency<C>) {
        self.observe_breaker(&dependency.breaker().stats(), dependency.retry_stats());
    }

    /// Reads one breaker's figures and its retry layer's counters into the
    /// registry (a client's, or the NATS publisher's).
    pub fn observe_breaker(&self, breaker: &BreakerStats, retry: RetryStats) {
        let name = breaker.name.clone();
        self.record(|| {
            for state in STATES {
                let on = if breaker.state == state { 1.0 } else { 0.0 };
                metrics::gauge!("circuit_breaker_state", "breaker" => name.clone(), "state" => state.as_str())
                    .set(on);
            }
            metrics::gauge!("circuit_breaker_failure_rate", "breaker" => name.clone())
                .set(breaker.failure_rate);
            metrics::gauge!("circuit_breaker_window_calls", "breaker" => name.clone())
                .set(breaker.calls as f64);
            counter!("circuit_breaker_rejected_calls_total", "breaker" => name.clone())
                .absolute(breaker.rejected);
            counter!("retry_budget_exhausted_total", "target" => name.clone())
                .absolute(retry.budget_exhausted);
        });
    }

    /// Reads the order service's look-ups of kept user copies into the
    /// registry.
    pub(crate) fn observe_copy_lookups(&self, lookups: crate::order::upstream::CopyLookups) {
        self.record(|| {
            for (result, n) in [
                ("found", lookups.found),
                ("missing", lookups.missing),
                ("remembered", lookups.remembered),
            ] {
                counter!("user_copy_lookups_total", "result" => result).absolute(n);
            }
        });
    }

    /// Counts a TLS handshake on the service's port: `None` for one that
    /// gave a served connection, else why it failed.
    pub fn tls_handshake(&self, failure: Option<HandshakeFailure>) {
        self.record(|| match failure {
            None => counter!("tls_handshakes_total").increment(1),
            Some(reason) => {
                counter!("tls_handshake_failures_total", "reason" => reason.as_str()).increment(1)
            }
        });
    }

    /// Counts a reload of the service's certificate.
    pub fn tls_reload(&self, result: ReloadResult) {
        self.record(|| {
            counter!("tls_certificate_reloads_total", "result" => result.as_str()).increment(1);
        });
    }

    /// Reads the seconds to expiry of the certificate `tls` presents
    /// into the registry.
    pub fn observe_tls(&self, tls: &TlsDir) {
        let left = crate::tls::reload::signed_secs_until(tls.identity().current().not_after);
        self.record(|| metrics::gauge!("tls_certificate_expiry_seconds").set(left as f64));
    }

    /// Counts a breaker transition (from a breaker hook).
    pub fn transition(&self, breaker: &str, from: CircuitState, to: CircuitState) {
        let breaker = breaker.to_owned();
        self.record(|| {
            counter!(
                "circuit_breaker_transitions_total",
                "breaker" => breaker,
                "from" => from.as_str(),
                "to" => to.as_str()
            )
            .increment(1);
        });
    }

    /// Counts a retry (from a retry hook).
    pub fn retry(&self, target: &str, reason: &RetryReason) {
        let target = target.to_owned();
        let reason = match reason {
            RetryReason::Transport => "transport".to_owned(),
            RetryReason::Timeout => "timeout".to_owned(),
            RetryReason::Status(s) => format!("status_{}", s.as_u16()),
            _ => "other".to_owned(),
        };
        self.record(|| {
            counter!("retry_attempts_total", "target" => target, "reason" => reason).increment(1);
        });
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "HTTP requests answered");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving a request to its response head"
    );
    describe_counter!(
        "auth_failures_total",
        "Requests refused by service authentication, by reason"
    );
    describe_counter!(
        "auth_verified_total",
        "Requests whose caller was authenticated (a token, an API key or a client certificate)"
    );
    describe_counter!(
        "auth_cache_hits_total",
        "Verified tokens served from the cache"
    );
    describe_gauge!(
        "circuit_breaker_state",
        "1 for the breaker's current state, 0 for the others"
    );
    describe_counter!("circuit_breaker_transitions_total", "Breaker state changes");
    describe_counter!(
        "circuit_breaker_rejected_calls_total",
        "Calls refused by an open breaker"
    );
    describe_gauge!(
        "circuit_breaker_failure_rate",
        "Failure rate in the breaker's window"
    );
    describe_gauge!(
        "circuit_breaker_window_calls",
        "Calls in the breaker's window"
    );
    describe_counter!("retry_attempts_total", "Retries made, by target and reason");
    describe_counter!(
        "retry_budget_exhausted_total",
        "Retries refused because the budget was spent"
    );
    describe_gauge!(
        "outbox_pending_notifications",
        "Notifications stored and not yet delivered"
    );
    describe_counter!(
        "outbox_deliveries_total",
        "Notification delivery attempts, by result"
    );
    describe_counter!(
        "user_copy_lookups_total",
        "Look-ups of a kept copy of a user while the user service was unavailable, by result"
    );
    describe_counter!(
        "tls_handshakes_total",
        "TLS handshakes that gave a connection with a client identity"
    );
    describe_counter!(
        "tls_handshake_failures_total",
        "TLS handshakes that failed, by reason"
    );
    describe_gauge!(
        "tls_certificate_expiry_seconds",
        Unit::Seconds,
        "Seconds until the service's own certificate expires (negative once it has)"
    );
    describe_gauge!(
        "nats_connected",
        "1 while the NATS client is connected, 0 otherwise"
    );
    describe_counter!(
        "nats_publish_total",
        "Notifications published to JetStream (after retries), by result"
    );
    describe_counter!(
        "nats_consumed_total",
        "Notifications taken from JetStream, by result"
    );
    describe_gauge!(
        "notification_consumer_lag",
        "Messages of the consumer not yet delivered or not yet acked"
    );
    describe_counter!(
        "tls_certificate_reloads_total",
        "Reloads of the service's certificate from disk, by result"
    );
}

/// Counts and times requests by method, route and status. Built by
/// [`Metrics::http_layer`].
#[derive(Debug, Clone)]
pub struct HttpMetricsLayer {
    metrics: Metrics,
}

impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            handles: Arc::new(Handles {
                metrics: self.metrics.clone(),
                seen: RwLock::new(Vec::new()),
            }),
        }
    }
}

/// The service of [`HttpMetricsLayer`].
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    handles: Arc<Handles>,
}

/// The counter and histogram of each (method, route, status) seen, so a
/// request costs a short scan under a read lock instead of building and
/// registering its keys. axum applies the layer per route, so each list
/// stays short; past [`MAX_SEEN`] entries, keys are registered each time.
struct Handles {
    metrics: Metrics,
    seen: RwLock<Vec<Seen>>,
}

const MAX_SEEN: usize = 64;

struct Seen {
    method: &'static str,
    route: Option<MatchedPath>,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

impl fmt::Debug for Handles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handles").finish_non_exhaustive()
    }
}

impl Handles {
    fn record(&self, method: &'static str, route: Option<&MatchedPath>, status: u16, seconds: f64) {
        let same = |s: &Seen| {
            s.status == status
                && s.method == method
                && s.route.as_ref().map(MatchedPath::as_str) == route.map(MatchedPath::as_str)
        };
        {
            let seen = self.seen.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = seen.iter().find(|s| same(s)) {
                s.requests.increment(1);
                s.duration.record(seconds);
                return;
            }
        }
        let labels = [
            ("method", method.to_owned()),
            (
                "route",
                route.map_or("unmatched", MatchedPath::as_str).to_owned(),
            ),
            ("status", status.to_string()),
        ];
        let (requests, duration) = self.metrics.record(|| {
            (
                counter!("http_requests_total", &labels),
                histogram!("http_request_duration_seconds", &labels),
            )
        });
        requests.increment(1);
        duration.record(seconds);
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() < MAX_SEEN && !seen.iter().any(same) {
            seen.push(Seen {
                method,
                route: route.cloned(),
                status,
                requests,
                duration,
            });
        }
    }
}

impl<S, B, ResB> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<ResB>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The route template, not the path (`/users/{id}`), so ids do not
        // explode the label set.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        MetricsFuture {
            inner: self.inner.call(req),
            labels: Some(Labels {
                method,
                route,
                handles: self.handles.clone(),
            }),
            start: Instant::now(),
        }
    }
}

/// The `method` label: a standard method's name, or `other` for any
/// extension method, which a client may make up freely (and make long).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

struct Labels {
    method: &'static str,
    route: Option<MatchedPath>,
    handles: Arc<Handles>,
}

pin_project_lite::pin_project! {
    /// Records the request when its response (or error) is ready.
    pub struct MetricsFuture<F> {
        #[pin]
        inner: F,
        labels: Option<Labels>,
        start: Instant,
    }
}

impl<F> fmt::Debug for MetricsFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsFuture").finish_non_exhaustive()
    }
}

impl<F, ResB, E> Future for MetricsFuture<F>
where
    F: Future<Output = Result<Response<ResB>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Some(labels) = this.labels.take() {
            // A failed service (no response) is counted as a 500: that is
            // what the client sees from hyper.
            let status = result.as_ref().map_or(500, |res| res.status().as_u16());
            let seconds = this.start.elapsed().as_secs_f64();
            labels
                .handles
                .record(labels.method, labels.route.as_ref(), status, seconds);
        }
        Poll::Ready(result)
    }
}
