//! NATS JetStream between the order and notification services
//! (`--notify-via nats`): the flags, the connection, the stream.
//!
//! With `--notify-via nats` the order service's outbox publishes each
//! notification to a JetStream subject ([`publish`]) instead of posting it
//! to the notification service, and the notification service takes them
//! from a durable pull consumer ([`crate::notification::nats`]). The outbox still decides
//! when to send and what was delivered; JetStream only carries the
//! message. A record counts as delivered once the stream has acked it
//! (stored it), so an order's notification survives the notification
//! service being down, slow or restarted.
//!
//! Why the same record is never stored twice:
//!
//! - each message carries `Nats-Msg-Id: <deployment id>-order-<order id>`,
//!   and the stream drops a message whose id it saw within its duplicate
//!   window ([`DUPLICATE_WINDOW`]): an outbox that re-sends after a lost
//!   ack gets a `duplicate` ack instead of a second message. The
//!   deployment id ([`OrderStore::deployment_id`]) keeps two order
//!   databases (whose order ids both start at 1) on one server apart;
//! - past the window, the notification service still keeps one
//!   notification per order (`NotificationStore::accept`).
//!
//! Both services connect with a bounded connect timeout
//! ([`CONNECT_TIMEOUT`]) and let the client reconnect by itself, with no
//! limit on attempts: a service starts whether or not NATS is up, and
//! [`/health`](health) says how the connection is. Each creates the
//! stream if it is missing (again after it is deleted), with file storage
//! and limits on age and size, so it is bounded ([`stream_config`]).
//!
//! [`OrderStore::deployment_id`]: crate::order::OrderStore::deployment_id

pub mod publish;

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::telemetry::Escaped;

/// The longest a connection attempt to NATS may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest pause between two reconnection attempts.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// How long the stream remembers a `Nats-Msg-Id` to drop a replay.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long the stream keeps a message (consumed or not).
pub const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// The most bytes the stream holds; the oldest messages go first.
pub const MAX_BYTES: i64 = 256 * 1024 * 1024;
/// The largest message the stream takes: a notification (4 KiB of text
/// at most) in JSON, with room to spare.
pub const MAX_MESSAGE_SIZE: i32 = 64 * 1024;
/// The longest stream or consumer name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// The longest subject accepted.
pub const MAX_SUBJECT_LEN: usize = 255;

/// How the order service hands notifications to the notification service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum NotifyVia {
    /// `POST /notifications` over HTTP.
    #[default]
    Http,
    /// Published to a NATS JetStream stream, consumed by the notification
    /// service.
    Nats,
}

/// The flags of `--notify-via` and its NATS settings, on `order`,
/// `notification` and `all`.
#[derive(Debug, Clone, clap::Args)]
pub struct BrokerArgs {
    /// How notifications travel from the order service to the notification
    /// service: `http` (POST /notifications) or `nats` (NATS JetStream).
    #[arg(long, value_enum, default_value = "http")]
    pub notify_via: NotifyVia,
    /// The NATS server, nats://HOST:PORT (with --notify-via nats).
    #[arg(long, default_value = "nats://127.0.0.1:4222", value_parser = nats_url)]
    pub nats_url: String,
    /// The JetStream stream notifications are kept in (created if missing).
    #[arg(long, default_value = "NOTIFICATIONS", value_parser = stream_name)]
    pub nats_stream: String,
    /// The subject notifications are published to.
    #[arg(long, default_value = "notifications.orders", value_parser = subject)]
    pub nats_subject: String,
    /// The durable consumer the notification service reads with.
    #[arg(long, default_value = "notification-service", value_parser = consumer_name)]
    pub nats_consumer: String,
}

impl BrokerArgs {
    /// The NATS settings with `--notify-via nats`, `None` with `http`.
    pub fn nats(&self) -> Option<NatsConfig> {
        match self.notify_via {
            NotifyVia::Http => None,
            NotifyVia::Nats => Some(NatsConfig {
                url: self.nats_url.clone(),
                stream: self.nats_stream.clone(),
                subject: self.nats_subject.clone(),
                consumer: self.nats_consumer.clone(),
            }),
        }
    }
}

/// Where notifications go through NATS, and under which names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server, `nats://HOST:PORT`.
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// The subject messages are published to (the stream's only subject).
    pub subject: String,
    /// The notification service's durable consumer.
    pub consumer: String,
}

impl NatsConfig {
    /// The defaults of the flags, at `url`.
    pub fn at(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            stream: "NOTIFICATIONS".to_owned(),
            subject: "notifications.orders".to_owned(),
            consumer: "notification-service".to_owned(),
        }
    }
}

/// A NATS client could not be set up.
#[derive(Debug)]
pub struct BrokerError(String);

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NATS: {}", self.0)
    }
}

impl std::error::Error for BrokerError {}

impl From<String> for BrokerError {
    fn from(text: String) -> Self {
        BrokerError(text)
    }
}

/// A client of the server at `config.url`, named `name` (seen in the
/// server's connection list). It returns at once: the first connection
/// is made in the background, each attempt bounded by
/// [`CONNECT_TIMEOUT`], and the client reconnects by itself, without a
/// limit, after a lost connection, pausing at most
/// [`MAX_RECONNECT_DELAY`] between attempts.
pub async fn connect(config: &NatsConfig, name: &str) -> Result<async_nats::Client, BrokerError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            let attempts = u32::try_from(attempts).unwrap_or(u32::MAX).min(16);
            Duration::from_millis(50)
                .saturating_mul(2u32.saturating_pow(attempts))
                .min(MAX_RECONNECT_DELAY)
        })
        .event_callback(|event| async move {
            // The server's own words can be in the event: escaped.
            tracing::info!(event = %Escaped(&event), "NATS connection");
        })
        .connect(config.url.as_str())
        .await
        .map_err(|e| BrokerError(format!("{}: {}", Escaped(&config.url), Escaped(&e))))
}

/// The stream `config` names: its one subject, in files, bounded in age
/// and size (the oldest messages are dropped first), with a duplicate
/// window for `Nats-Msg-Id`.
pub fn stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        subjects: vec![config.subject.clone()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        discard: stream::DiscardPolicy::Old,
        duplicate_window: DUPLICATE_WINDOW,
        max_age: MAX_AGE,
        max_bytes: MAX_BYTES,
        max_message_size: MAX_MESSAGE_SIZE,
        description: Some("order notifications (demo-services)".to_owned()),
        ..Default::default()
    }
}

/// Creates the stream if it does not exist; an existing one is left as
/// it is.
pub async fn ensure_stream(js: &jetstream::Context, config: &NatsConfig) -> Result<(), String> {
    js.get_or_create_stream(stream_config(config))
        .await
        .map(drop)
        .map_err(|e| format!("stream {}: {e}", config.stream))
}

/// The client's connection as a word: `connected`, `disconnected` or
/// `pending` (never connected yet).
pub fn connection_state(client: &async_nats::Client) -> &'static str {
    match client.connection_state() {
        async_nats::connection::State::Connected => "connected",
        async_nats::connection::State::Disconnected => "disconnected",
        async_nats::connection::State::Pending => "pending",
    }
}

/// The `broker` object of `/health`: the connection, the stream and the
/// subject.
pub fn health(client: &async_nats::Client, config: &NatsConfig) -> serde_json::Value {
    serde_json::json!({
        "kind": "nats",
        "connection": connection_state(client),
        "stream": config.stream,
        "subject": config.subject,
    })
}

// === flag values ===

/// `--nats-url`: `nats://HOST:PORT` (a port is required, so a typo does
/// not silently mean 4222).
pub fn nats_url(text: &str) -> Result<String, String> {
    let Some(rest) = text.strip_prefix("nats://") else {
        return Err(format!("`{}` must start with nats://", Escaped(text)));
    };
    let ok = text.len() <= 255
        && rest
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        && !rest.contains(['/', '?', '#', '@', ' ']);
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!("`{}` is not nats://HOST:PORT", Escaped(text)))
    }
}

/// `--nats-stream`: a JetStream name (see [`check_name`]).
pub fn stream_name(text: &str) -> Result<String, String> {
    check_name(text).map(|()| text.to_owned())
}

/// `--nats-consumer`: a JetStream name (see [`check_name`]).
pub fn consumer_name(text: &str) -> Result<String, String> {
    check_name(text).map(|()| text.to_owned())
}

/// A stream or consumer name: 1 to [`MAX_NAME_LEN`] visible ASCII
/// characters, none of `.` `*` `>` (subject syntax, which JetStream's API
/// subjects embed names in) and none of `/` `\` (names become directories
/// under file storage).
pub fn check_name(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > MAX_NAME_LEN {
        return Err(format!("must have 1 to {MAX_NAME_LEN} characters"));
    }
    match text
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        Some(c) => Err(format!(
            "`{}` has {c:?}; a name has no spaces, `.`, `*`, `>`, `/` or `\\`",
            Escaped(text)
        )),
        None => Ok(()),
    }
}

/// `--nats-subject`: tokens of visible ASCII separated by single dots,
/// with no wildcard (`*`, `>`: one publishes to it), at most
/// [`MAX_SUBJECT_LEN`] characters.
pub fn subject(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > MAX_SUBJECT_LEN {
        return Err(format!("must have 1 to {MAX_SUBJECT_LEN} characters"));
    }
    if text
        .split('.')
        .any(|token| token.is_empty() || token == "*" || token.contains('>'))
        || text.contains('*')
        || !text.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "`{}` is not a subject to publish to: dot-separated words of visible ASCII, \
             no empty word and no wildcard (`*`, `>`)",
            Escaped(text)
        ));
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_jetstream_or_file_storage_cannot_take() {
        assert!(stream_name("NOTIFICATIONS").is_ok());
        assert!(consumer_name("notification-service_2").is_ok());
        for bad in [
            "",
            "a b",
            "a.b",
            "a*",
            "a>",
            "a/b",
            "a\\b",
            "tab\there",
            "é",
        ] {
            assert!(stream_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(stream_name(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(stream_name(&"x".repeat(MAX_NAME_LEN + 1)).is_err());
    }

    #[test]
    fn subjects_are_literal_dot_separated_words() {
        assert!(subject("notifications.orders").is_ok());
        assert!(subject("a").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.b*", "x\n"] {
            assert!(subject(bad).is_err(), "{bad:?} accepted");
        }
        assert!(subject(&"x".repeat(MAX_SUBJECT_LEN + 1)).is_err());
    }

    #[test]
    fn urls_need_the_scheme_a_host_and_a_port() {
        assert!(nats_url("nats://127.0.0.1:4222").is_ok());
        assert!(nats_url("nats://localhost:4222").is_ok());
        for bad in [
            "127.0.0.1:4222",
            "http://127.0.0.1:4222",
            "nats://127.0.0.1",
            "nats://:4222",
            "nats://h:99999",
            "nats://u@h:1",
            "nats://h:1/x",
        ] {
            assert!(nats_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_stream_is_bounded_and_deduplicates() {
        let config = stream_config(&NatsConfig::at("nats://127.0.0.1:4222"));
        assert_eq!(config.subjects, ["notifications.orders"]);
        assert_eq!(config.duplicate_window, DUPLICATE_WINDOW);
        assert!(config.max_age > Duration::ZERO && config.max_bytes > 0);
        assert_eq!(config.storage, stream::StorageType::File);
    }
}
