//! Errors of the client.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;

use crate::BoxError;
use crate::breaker::CircuitOpen;
use crate::timeout::Elapsed;

/// Why a [`ServiceClient`](super::ServiceClient) call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The service answered with a status outside 2xx (after any retries).
    Status {
        /// The status.
        status: StatusCode,
        /// The body, as sent.
        body: Bytes,
    },
    /// No answer: the circuit is open, the call ran out of time, or the
    /// transport failed. The source says which.
    Unavailable(BoxError),
    /// The answer was not the JSON expected.
    Decode(serde_json::Error),
    /// The request body could not be written as JSON.
    Encode(serde_json::Error),
    /// The path made an invalid URI.
    InvalidRequest(String),
}

impl ClientError {
    /// Whether the call was rejected by an open circuit.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, ClientError::Unavailable(e) if e.is::<CircuitOpen>())
    }

    /// Whether the call ran out of time (an attempt's timeout or the deadline).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ClientError::Unavailable(e) if e.is::<Elapsed>())
    }

    /// Whether the deadline of the whole call (possibly the caller's,
    /// carried in from upstream) ended it, here or, as the next server
    /// said, there: the caller's budget ran out, which says nothing about
    /// the service's health (the breaker did not count it).
    pub fn is_deadline(&self) -> bool {
        matches!(self, ClientError::Unavailable(e)
            if e.downcast_ref::<Elapsed>().is_some_and(Elapsed::is_deadline))
    }

    /// For an open circuit: the time until it lets a probe through.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Unavailable(e) => e.downcast_ref::<CircuitOpen>()?.retry_after(),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Status { status, body } => {
                // The service's own text, cut and escaped: it ends up in log
                // lines, where a newline in it would forge another line.
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                write!(f, "the service answered {status}: {}", text.escape_debug())
            }
            ClientError::Unavailable(e) => write!(f, "the service is unavailable: {e}"),
            ClientError::Decode(e) => write!(f, "the answer is not the JSON expected: {e}"),
            ClientError::Encode(e) => write!(f, "the request body could not be encoded: {e}"),
            ClientError::InvalidRequest(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Unavailable(e) => Some(&**e),
            ClientError::Decode(e) | ClientError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// [`ServiceClient::new`](super::ServiceClient::new) was given a base URL
/// it cannot join paths to.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BuildError {
    /// The base URL is not an absolute `http://host[:port]` URL.
    BaseUrl(String),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::BaseUrl(url) => write!(
                f,
                "base URL `{url}` must be absolute, like http://127.0.0.1:3000"
            ),
        }
    }
}

impl std::error::Error for BuildError {}
