//! Taking notifications from NATS JetStream (`--notify-via nats`), beside
//! the HTTP server.
//!
//! A durable pull consumer with explicit acks reads the stream in batches
//! of at most [`BATCH`], with at most [`MAX_ACK_PENDING`] messages given
//! out and not acked; one not acked within [`ACK_WAIT`] is given out
//! again. Each message is handled as `POST /notifications` handles a
//! request, and acked only after the database has committed:
//!
//! | the message | the store | the answer to JetStream |
//! |---|---|---|
//! | not the JSON of a notification | untouched | `Term` (never again), logged escaped |
//! | a notification | stored (`New`) or already there (`Duplicate`) | `Ack` |
//! | another notification for an order that has one | untouched (`Conflict`) | `Term`, logged as a warning |
//! | any | database error | `Nak` after [`NAK_DELAY`]: given out again |
//!
//! So a message is stored at least once, and the store keeps one
//! notification per order, so it is shown once. The loop survives the
//! connection dropping (the client reconnects; pulls go on after it) and
//! the consumer or the whole stream vanishing (both are created again,
//! [`RETRY_DELAY`] after a failed pull), and stops as soon as shutdown
//! begins: a message being handled is finished first (one database write
//! and one ack), the pull waiting for more is dropped. Messages handed to
//! a pull that is dropped are given out again after [`ACK_WAIT`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::store::{Accepted, NotificationStore};
use crate::broker::{self, BrokerError, NatsConfig};
use crate::telemetry::{Escaped, Metrics};

/// The most messages one pull asks for.
pub const BATCH: usize = 64;
/// The most messages given out and not yet acked.
pub const MAX_ACK_PENDING: i64 = 256;
/// How long a message given out may stay unacked before it is given out
/// again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// How long one pull waits for messages before it ends empty.
pub const PULL_WAIT: Duration = Duration::from_secs(1);
/// The pause after a failed set-up or pull, before trying again.
pub const RETRY_DELAY: Duration = Duration::from_secs(1);
/// How long a message the database could not take waits to be given out
/// again.
pub const NAK_DELAY: Duration = Duration::from_secs(1);
/// The longest a `/health` or `/metrics` answer waits for the consumer's
/// figures.
pub const LAG_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the consumer's figures are reused, so `/health` cannot be used
/// to flood NATS with requests.
pub const LAG_TTL: Duration = Duration::from_secs(1);
/// How much of a malformed message goes into the log.
const LOGGED_BYTES: usize = 256;

/// The body of a message: what `POST /notifications` takes.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Input {
    user_id: i64,
    order_id: i64,
    channel: String,
    message: String,
}

/// The notification service's side of NATS: the client, the names, and
/// the consumer's figures for `/health`. Cheap to clone.
#[derive(Clone)]
pub struct NatsInbox {
    client: async_nats::Client,
    js: jetstream::Context,
    config: Arc<NatsConfig>,
    metrics: Metrics,
    lag: Arc<tokio::sync::Mutex<Lag>>,
}

/// The consumer's last figures and when they were fetched.
#[derive(Debug, Default)]
struct Lag {
    at: Option<Instant>,
    value: Option<u64>,
}

impl std::fmt::Debug for NatsInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsInbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl NatsInbox {
    /// Connects to `config`'s server (in the background: see
    /// [`broker::connect`]); results are counted in `metrics`.
    pub async fn connect(config: &NatsConfig, metrics: &Metrics) -> Result<NatsInbox, BrokerError> {
        let client = broker::connect(config, crate::auth::NOTIFICATION_SERVICE).await?;
        Ok(NatsInbox {
            js: jetstream::new(client.clone()),
            client,
            config: Arc::new(config.clone()),
            metrics: metrics.clone(),
            lag: Arc::default(),
        })
    }

    /// The NATS client (its connection state).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The consumer's configuration: durable, explicit acks, bounded.
    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.config.consumer.clone()),
            description: Some("notification-service (demo-services)".to_owned()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING,
            max_batch: BATCH as i64,
            filter_subject: self.config.subject.clone(),
            ..Default::default()
        }
    }

    /// The stream and the consumer, created if missing.
    async fn consumer(&self) -> Result<PullConsumer, String> {
        broker::ensure_stream(&self.js, &self.config).await?;
        let stream = self
            .js
            .get_stream_no_info(&self.config.stream)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .get_or_create_consumer(&self.config.consumer, self.consumer_config())
            .await
            .map_err(|e| format!("consumer {}: {e}", self.config.consumer))
    }

    /// Takes notifications into `store` until `shutdown` completes.
    pub async fn run(self, store: NotificationStore, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut consumer: Option<PullConsumer> = None;
        'pulls: loop {
            let current = match &consumer {
                Some(current) => current.clone(),
                None => {
                    let made = tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        made = self.consumer() => made,
                    };
                    match made {
                        Ok(made) => {
                            tracing::info!(
                                stream = %self.config.stream,
                                consumer = %self.config.consumer,
                                "NATS consumer ready"
                            );
                            consumer = Some(made.clone());
                            made
                        }
                        Err(e) => {
                            tracing::warn!(error = %Escaped(&e), "NATS consumer not ready; trying again");
                            if pause(shutdown.as_mut()).await {
                                break;
                            }
                            continue;
                        }
                    }
                }
            };
            let pull = current
                .batch()
                .max_messages(BATCH)
                .expires(PULL_WAIT)
                .messages();
            let batch = tokio::select! {
                biased;
                () = &mut shutdown => break,
                batch = pull => batch,
            };
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(error = %Escaped(&e), "NATS pull failed; trying again");
                    consumer = None;
                    if pause(shutdown.as_mut()).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    () = &mut shutdown => break 'pulls,
                    next = batch.next() => next,
                };
                match next {
                    None => break,
                    Some(Ok(message)) => self.handle(&store, message).await,
                    Some(Err(e)) => {
                        // No responders (the consumer or the stream is
                        // gone), or the consumer was deleted mid-pull.
                        tracing::warn!(
                            error = %Escaped(&e),
                            "NATS pull ended with an error; setting the consumer up again"
                        );
                        consumer = None;
                        if pause(shutdown.as_mut()).await {
                            break 'pulls;
                        }
                        break;
                    }
                }
            }
        }
        tracing::info!("NATS consumer stopped");
    }

    /// Stores one message's notification, then acks it (see the module's
    /// table).
    async fn handle(&self, store: &NotificationStore, message: jetstream::Message) {
        let request_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("X-Request-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let input = serde_json::from_slice::<Input>(&message.payload)
            .map_err(|e| e.to_string())
            .and_then(|input| {
                super::handlers::check(&input.channel, &input.message)
                    .map(|()| input)
                    .map_err(str::to_owned)
            });
        let (answer, result) = match input {
            Err(why) => {
                let shown = &message.payload[..message.payload.len().min(LOGGED_BYTES)];
                tracing::warn!(
                    request_id = %Escaped(&request_id),
                    error = %Escaped(&why),
                    body = %Escaped(String::from_utf8_lossy(shown)),
                    "malformed notification message; terminated"
                );
                (AckKind::Term, "malformed")
            }
            Ok(input) => match store
                .accept(
                    input.user_id,
                    input.order_id,
                    &input.channel,
                    &input.message,
                )
                .await
            {
                Ok(Accepted::New(notification)) => {
                    tracing::info!(
                        request_id = %Escaped(&request_id),
                        notification = notification.id,
                        order = input.order_id,
                        user = input.user_id,
                        "notification sent (from NATS)"
                    );
                    (AckKind::Ack, "new")
                }
                Ok(Accepted::Duplicate(_)) => {
                    tracing::info!(
                        request_id = %Escaped(&request_id),
                        order = input.order_id,
                        "duplicate notification from NATS ignored"
                    );
                    (AckKind::Ack, "duplicate")
                }
                Ok(Accepted::Conflict(stored)) => {
                    tracing::warn!(
                        request_id = %Escaped(&request_id),
                        order = input.order_id,
                        user = input.user_id,
                        stored_user = stored.user_id,
                        channel = ?input.channel,
                        message = ?input.message,
                        "notification from NATS refused: the order has a different one; terminated"
                    );
                    (AckKind::Term, "conflict")
                }
                Err(e) => {
                    tracing::error!(
                        request_id = %Escaped(&request_id),
                        order = input.order_id,
                        error = %Escaped(&e),
                        "database error; the message will be given out again"
                    );
                    (AckKind::Nak(Some(NAK_DELAY)), "retry")
                }
            },
        };
        if let Err(e) = message.ack_with(answer).await {
            // It will be given out again after the ack wait; the store
            // takes it as a duplicate then.
            tracing::warn!(error = %Escaped(&e), "could not answer a NATS message");
        }
        self.metrics.record(|| {
            metrics::counter!("nats_consumed_total", "result" => result).increment(1);
        });
    }

    /// The consumer's lag: messages not yet given out plus those given out
    /// and not acked; fetched at most once per [`LAG_TTL`], within
    /// [`LAG_TIMEOUT`], `None` when that failed.
    pub async fn lag(&self) -> Option<u64> {
        let mut cached = self.lag.lock().await;
        if let Some(at) = cached.at
            && at.elapsed() < LAG_TTL
        {
            return cached.value;
        }
        let fetch = async {
            let stream = self.js.get_stream_no_info(&self.config.stream).await.ok()?;
            let info = stream.consumer_info(&self.config.consumer).await.ok()?;
            Some(info.num_pending + info.num_ack_pending as u64)
        };
        cached.value = tokio::time::timeout(LAG_TIMEOUT, fetch)
            .await
            .ok()
            .flatten();
        cached.at = Some(Instant::now());
        cached.value
    }

    /// The `broker` object of `/health`: the connection, the stream, the
    /// subject, the consumer and its lag (`null` when unknown).
    pub async fn health(&self) -> serde_json::Value {
        let mut body = broker::health(&self.client, &self.config);
        body["consumer"] = serde_json::Value::from(self.config.consumer.as_str());
        body["lag"] = serde_json::json!(self.lag().await);
        body
    }

    /// Reads the connection state and the lag into the registry, for a
    /// scrape.
    pub async fn observe(&self) {
        let connected = matches!(
            self.client.connection_state(),
            async_nats::connection::State::Connected
        );
        let lag = self.lag().await;
        self.metrics.record(|| {
            metrics::gauge!("nats_connected").set(if connected { 1.0 } else { 0.0 });
            if let Some(lag) = lag {
                metrics::gauge!("notification_consumer_lag").set(lag as f64);
            }
        });
    }
}

/// Waits [`RETRY_DELAY`]; `true` if `shutdown` completed meanwhile.
async fn pause(shutdown: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        biased;
        () = shutdown => true,
        () = tokio::time::sleep(RETRY_DELAY) => false,
    }
}
