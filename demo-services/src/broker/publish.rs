//! Publishing to JetStream as a `tower::Service`, so the same deadline,
//! retry, breaker and timeout layers that wrap the HTTP calls wrap it.
//!
//! Those layers speak `http::Request` and `http::Response`, so a publish
//! is written as one: [`JetStreamPublish`] takes a `POST` whose body is the
//! payload and whose headers become the message's headers (names in their
//! usual capitalisation, `Nats-Msg-Id`, `X-Request-Id`), publishes it to
//! its subject and answers once the stream has acked it, with the ack
//! ([`Published`]) as the response body. A `POST` gets the write timeout;
//! it is retried only with a `Nats-Msg-Id` ([`has_message_id`]): the
//! stream drops a replay by that id, which is what makes it idempotent.
//!
//! Errors are [`PublishFailed`], classified by what trying again can do
//! ([`retry_decision`]): a timeout, no responders (no stream for the
//! subject: it is created again before the next attempt), a broken
//! connection or too many acks in flight are retried and counted by the
//! breaker; a message the server refuses as such (too large) is neither
//! ([`is_refused`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri};
use tower::Service;
use tower_circuit::BoxError;
use tower_circuit::breaker::CircuitOpen;
use tower_circuit::retry::{Decision, RetryReason};
use tower_circuit::timeout::Elapsed;

use super::NatsConfig;

/// The stream's ack of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence number in the stream.
    pub sequence: u64,
    /// The stream had the message's `Nats-Msg-Id` already (within its
    /// duplicate window) and dropped this copy: the earlier one stands.
    pub duplicate: bool,
}

/// Publishes each request's body to one subject and waits for the
/// stream's ack; creates the stream first if it is missing (at the first
/// publish, and after one found no stream).
#[derive(Debug, Clone)]
pub struct JetStreamPublish {
    js: jetstream::Context,
    config: Arc<NatsConfig>,
    /// Whether the stream is known to exist.
    stream_ready: Arc<AtomicBool>,
}

impl JetStreamPublish {
    /// Publishes through `js` to `config`'s subject, in `config`'s stream.
    pub fn new(js: jetstream::Context, config: NatsConfig) -> Self {
        JetStreamPublish {
            js,
            config: Arc::new(config),
            stream_ready: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Service<Request<Bytes>> for JetStreamPublish {
    type Response = Response<Published>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Published>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The client queues what it cannot send yet; the attempt's timeout
        // bounds the wait.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Bytes>) -> Self::Future {
        let js = self.js.clone();
        let config = self.config.clone();
        let ready = self.stream_ready.clone();
        Box::pin(async move {
            if !ready.load(Ordering::Acquire) {
                super::ensure_stream(&js, &config)
                    .await
                    .map_err(|e| PublishFailed::new(Failure::NoStream, e))?;
                ready.store(true, Ordering::Release);
            }
            let (parts, payload) = req.into_parts();
            let mut message = PublishMessage::build().payload(payload);
            for (name, value) in &parts.headers {
                let Ok(value) = value.to_str() else { continue };
                message = message.header(canonical(name.as_str()).as_str(), value);
            }
            let published = async {
                js.send_publish(config.subject.clone(), message)
                    .await?
                    .await
            };
            match published.await {
                Ok(ack) => Ok(Response::new(Published {
                    sequence: ack.sequence,
                    duplicate: ack.duplicate,
                })),
                Err(e) => {
                    let failure = Failure::of(e.kind());
                    if failure == Failure::NoStream {
                        // Deleted under us: create it again before the
                        // next attempt.
                        ready.store(false, Ordering::Release);
                    }
                    Err(PublishFailed::new(failure, e).into())
                }
            }
        })
    }
}

/// `nats-msg-id` as `Nats-Msg-Id`: http keeps header names in lower case,
/// and NATS servers match the headers they act on in this form.
fn canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// What went wrong with a publish, in the terms of what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No ack in time (or no room to send).
    Timeout,
    /// No stream listens on the subject (no responders), or it could not
    /// be created.
    NoStream,
    /// The connection broke before the ack came.
    Connection,
    /// The server refused this message as such (too large, a failed
    /// expectation): sending it again cannot help.
    Refused,
    /// Anything else the client reports.
    Other,
}

impl Failure {
    fn of(kind: PublishErrorKind) -> Failure {
        match kind {
            PublishErrorKind::TimedOut | PublishErrorKind::MaxAckPending => Failure::Timeout,
            PublishErrorKind::StreamNotFound => Failure::NoStream,
            PublishErrorKind::BrokenPipe => Failure::Connection,
            PublishErrorKind::MaxPayloadExceeded
            | PublishErrorKind::WrongLastMessageId
            | PublishErrorKind::WrongLastSequence => Failure::Refused,
            _ => Failure::Other,
        }
    }

    /// A fixed word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::NoStream => "no_stream",
            Failure::Connection => "connection",
            Failure::Refused => "refused",
            Failure::Other => "other",
        }
    }
}

/// A publish failed; [`PublishFailed::failure`] says how.
#[derive(Debug)]
pub struct PublishFailed {
    failure: Failure,
    source: BoxError,
}

impl PublishFailed {
    fn new(failure: Failure, source: impl Into<BoxError>) -> Self {
        PublishFailed {
            failure,
            source: source.into(),
        }
    }

    /// How it failed.
    pub fn failure(&self) -> Failure {
        self.failure
    }
}

impl std::fmt::Display for PublishFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "publish to NATS failed ({}): {}",
            self.failure.as_str(),
            self.source
        )
    }
}

impl std::error::Error for PublishFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Whether `e` is a message the server refused as such: says nothing
/// about the broker's health, so the breaker does not count it.
pub fn is_refused(e: &BoxError) -> bool {
    e.downcast_ref::<PublishFailed>()
        .is_some_and(|e| e.failure == Failure::Refused)
}

/// The retry layer's verdict on a publish: an ack (a duplicate included)
/// is done; an open circuit, the call's deadline and a refused message are
/// final; an attempt's timeout and every other failure (no responders, a
/// broken connection) are tried again.
pub fn retry_decision(result: Result<&Response<Published>, &BoxError>) -> Decision {
    let Err(e) = result else {
        return Decision::Done;
    };
    let retry = |reason| Decision::Retry {
        reason,
        not_before: None,
    };
    if let Some(elapsed) = e.downcast_ref::<Elapsed>() {
        return if elapsed.is_deadline() {
            Decision::Done
        } else {
            retry(RetryReason::Timeout)
        };
    }
    if e.is::<CircuitOpen>() || is_refused(e) {
        return Decision::Done;
    }
    match e
        .downcast_ref::<PublishFailed>()
        .map(PublishFailed::failure)
    {
        Some(Failure::Timeout) => retry(RetryReason::Timeout),
        _ => retry(RetryReason::Transport),
    }
}

/// The retry layer's idempotency rule for publishes: only a message with a
/// `Nats-Msg-Id`, which the stream deduplicates, is sent twice.
pub fn has_message_id(_method: &Method, _uri: &Uri, headers: &HeaderMap) -> bool {
    headers.contains_key(MESSAGE_ID)
}

/// The header JetStream deduplicates by, as http spells it.
pub const MESSAGE_ID: &str = "nats-msg-id";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_take_their_usual_capitals() {
        assert_eq!(canonical("nats-msg-id"), "Nats-Msg-Id");
        assert_eq!(canonical("x-request-id"), "X-Request-Id");
        assert_eq!(canonical("content-type"), "Content-Type");
    }

    #[test]
    fn only_a_refused_message_and_final_errors_are_not_retried() {
        let err = |failure| -> BoxError { PublishFailed::new(failure, "x").into() };
        for failure in [
            Failure::Timeout,
            Failure::NoStream,
            Failure::Connection,
            Failure::Other,
        ] {
            assert!(
                matches!(retry_decision(Err(&err(failure))), Decision::Retry { .. }),
                "{failure:?}"
            );
        }
        assert_eq!(retry_decision(Err(&err(Failure::Refused))), Decision::Done);
        assert!(is_refused(&err(Failure::Refused)));
        assert!(!is_refused(&err(Failure::Connection)));
        let ok = Response::new(Published {
            sequence: 1,
            duplicate: true,
        });
        assert_eq!(retry_decision(Ok(&ok)), Decision::Done);
    }
}
