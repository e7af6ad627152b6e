//! What the outbox delivers through (`--notify-via`): the notification
//! service's HTTP client, or NATS JetStream.
//!
//! Over NATS each record is published to the subject with
//! `Nats-Msg-Id: <deployment id>-order-<order id>` ([`message_id`]) and
//! the JSON body `POST /notifications` would carry; it counts as
//! delivered once the stream acks it, a duplicate ack included (the
//! stream had it already). The publish crosses the same layers as an
//! HTTP call, built in [`NatsNotifier::connect`], outermost first:
//! deadline → retry → circuit breaker → per-attempt timeout → request id
//! → JetStream publish ([`crate::broker::publish`]), with the order
//! service's `Resilience` settings. The breaker is `nats`'s own, so an
//! open circuit reaches the outbox as it does over HTTP
//! ([`NotifyError::is_circuit_open`], [`NotifyError::retry_after`]).

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use serde::Serialize;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_circuit::BoxError;
use tower_circuit::breaker::{Breaker, CircuitOpen};
use tower_circuit::classify::{ErrorsAsFailures, IgnoreErrors};
use tower_circuit::client::{ClientError, ServiceClient};
use tower_circuit::retry::{Decision, RetryStats};
use tower_circuit::timeout::{DeadlineLayer, RequestTimeoutLayer};

use super::resilience::Resilience;
use crate::broker::publish::{self, JetStreamPublish, Published};
use crate::broker::{self, BrokerError, NatsConfig};
use crate::telemetry::{Metrics, request_id};

/// The name of the NATS publisher's breaker and retry layer (in
/// `/health` and the `breaker`/`target` labels of `/metrics`).
pub const NATS: &str = "nats";

/// How the outbox delivers.
#[derive(Debug, Clone)]
pub enum Notifier {
    /// `POST /notifications` to the notification service.
    Http(ServiceClient),
    /// A publish to NATS JetStream (boxed: it is much the larger).
    Nats(Box<NatsNotifier>),
}

/// Why a delivery failed.
#[derive(Debug)]
pub enum NotifyError {
    /// The HTTP call.
    Http(ClientError),
    /// The publish (after its retries): a [`publish::PublishFailed`], an
    /// attempt's or the call's timeout, or the breaker's [`CircuitOpen`].
    Nats(BoxError),
}

impl NotifyError {
    /// Whether an open circuit refused the delivery.
    pub fn is_circuit_open(&self) -> bool {
        match self {
            NotifyError::Http(e) => e.is_circuit_open(),
            NotifyError::Nats(e) => e.is::<CircuitOpen>(),
        }
    }

    /// For an open circuit: the time until it lets a probe through.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            NotifyError::Http(e) => e.retry_after(),
            NotifyError::Nats(e) => e.downcast_ref::<CircuitOpen>()?.retry_after(),
        }
    }
}

impl std::fmt::Display for NotifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotifyError::Http(e) => write!(f, "{e}"),
            NotifyError::Nats(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for NotifyError {}

/// The `Nats-Msg-Id` of an order's notification: unique per deployment
/// (order database) and order, the same for every attempt.
pub fn message_id(deployment: &str, order_id: i64) -> String {
    format!("{deployment}-order-{order_id}")
}

impl Notifier {
    /// Delivers the notification of `order_id` (of the deployment
    /// `deployment`) with `body` as its JSON; `Ok` once the notification
    /// service (HTTP) or the stream (NATS) has it.
    pub async fn send<B: Serialize>(
        &self,
        deployment: &str,
        order_id: i64,
        body: &B,
    ) -> Result<(), NotifyError> {
        match self {
            Notifier::Http(client) => client
                .post_idempotent::<_, serde_json::Value>(
                    "/notifications",
                    &format!("order-{order_id}"),
                    body,
                )
                .await
                .map(drop)
                .map_err(NotifyError::Http),
            Notifier::Nats(nats) => {
                let payload = serde_json::to_vec(body).map_err(|e| NotifyError::Nats(e.into()))?;
                nats.publish(&message_id(deployment, order_id), payload.into())
                    .await
                    .map(drop)
                    .map_err(NotifyError::Nats)
            }
        }
    }
}

type PublishStack = BoxCloneSyncService<Request<Bytes>, Response<Published>, BoxError>;

/// The order service's publisher: the JetStream publish through its
/// layers, and the handles `/health` and `/metrics` read.
#[derive(Clone)]
pub struct NatsNotifier {
    stack: PublishStack,
    client: async_nats::Client,
    config: NatsConfig,
    breaker: Breaker,
    retry_stats: std::sync::Arc<dyn Fn() -> RetryStats + Send + Sync>,
    metrics: Metrics,
}

impl std::fmt::Debug for NatsNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsNotifier")
            .field("config", &self.config)
            .field("breaker", &self.breaker.name())
            .finish_non_exhaustive()
    }
}

impl NatsNotifier {
    /// Connects to `config`'s server (in the background: see
    /// [`broker::connect`]) and builds the publish stack with
    /// `resilience`'s settings; breaker changes, retries and publishes are
    /// counted in `metrics`.
    pub async fn connect(
        config: &NatsConfig,
        resilience: &Resilience,
        metrics: &Metrics,
    ) -> Result<NatsNotifier, BrokerError> {
        let client = broker::connect(config, crate::auth::ORDER_SERVICE).await?;
        let mut js = async_nats::jetstream::new(client.clone());
        // The ack's own wait: our per-attempt timeout is the one that
        // counts; this only keeps the client from giving up before it.
        js.set_timeout(resilience.timeout_write);
        let on_change = metrics.clone();
        let breaker = Breaker::builder(NATS)
            .config(resilience.breaker())
            .on_state_change(move |c| on_change.transition(&c.name, c.from, c.to))
            .build()
            .map_err(|e| BrokerError::from(format!("breaker: {e}")))?;
        if resilience.no_breaker {
            breaker.disable();
        }
        let on_retry = metrics.clone();
        let retry = resilience
            .retry(NATS)
            .idempotency(publish::has_message_id as fn(&_, &_, &_) -> bool)
            .on_retry(move |e| on_retry.retry(&e.name, &e.reason))
            .build()
            .map_err(|e| BrokerError::from(format!("retry: {e}")))?
            .classifier(
                publish::retry_decision as fn(Result<&Response<Published>, &BoxError>) -> Decision,
            );
        let stack = ServiceBuilder::new()
            // One budget for the whole publish, retries included.
            .layer(DeadlineLayer::new(resilience.call_deadline))
            // Tries again inside that budget, the same message id each
            // time; never after `CircuitOpen` or a refused message.
            .layer(retry.clone())
            // Inside retry, so it counts every attempt; a message the
            // server refuses as such is not the broker's fault.
            .layer(
                breaker
                    .errors_layer()
                    .classifier(IgnoreErrors::new(ErrorsAsFailures, publish::is_refused)),
            )
            // Each attempt's own limit: the write timeout (a publish is a
            // POST).
            .layer(RequestTimeoutLayer::new(resilience.timeouts()))
            // The delivery's request id, as the message's `X-Request-Id`.
            .layer(request_id::outbound_layer())
            // The publish, waiting for the stream's ack.
            .service(JetStreamPublish::new(js, config.clone()));
        Ok(NatsNotifier {
            stack: BoxCloneSyncService::new(stack),
            client,
            config: config.clone(),
            breaker,
            retry_stats: std::sync::Arc::new(move || retry.stats()),
            metrics: metrics.clone(),
        })
    }

    /// Publishes `payload` with `Nats-Msg-Id: id`; counts the outcome in
    /// `nats_publish_total{result}` (`published`, `duplicate`, `failed`,
    /// `rejected` by an open circuit).
    pub async fn publish(&self, id: &str, payload: Bytes) -> Result<Published, BoxError> {
        let req = Request::post("/")
            .header(publish::MESSAGE_ID, id)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(payload)?;
        let result = self.stack.clone().oneshot(req).await;
        let outcome = match &result {
            Ok(res) if res.body().duplicate => "duplicate",
            Ok(_) => "published",
            Err(e) if e.is::<CircuitOpen>() => "rejected",
            Err(_) => "failed",
        };
        self.metrics.record(|| {
            metrics::counter!("nats_publish_total", "result" => outcome).increment(1);
        });
        result.map(Response::into_body)
    }

    /// The breaker guarding the publishes.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The retry layer's counts.
    pub fn retry_stats(&self) -> RetryStats {
        (self.retry_stats)()
    }

    /// The NATS client (its connection state).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The `broker` object of `/health`.
    pub fn health(&self) -> serde_json::Value {
        broker::health(&self.client, &self.config)
    }

    /// Reads the connection state, breaker and retry counts into the
    /// registry, for a scrape.
    pub fn observe(&self) {
        self.metrics
            .observe_breaker(&self.breaker.stats(), self.retry_stats());
        let connected = matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        );
        self.metrics.record(|| {
            metrics::gauge!("nats_connected").set(if connected { 1.0 } else { 0.0 });
        });
    }
}
