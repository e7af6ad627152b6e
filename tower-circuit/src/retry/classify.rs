//! Which outcomes are worth another attempt.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Request, Response, StatusCode, header};

use crate::BoxError;
use crate::breaker::CircuitOpen;
use crate::timeout::Elapsed;

/// Why an attempt is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryReason {
    /// The connection or transport failed.
    Transport,
    /// The attempt timed out.
    Timeout,
    /// The server answered with a retryable status.
    Status(StatusCode),
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Transport => f.write_str("transport error"),
            RetryReason::Timeout => f.write_str("attempt timed out"),
            RetryReason::Status(s) => write!(f, "status {}", s.as_u16()),
        }
    }
}

/// The verdict on one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Return this outcome to the caller.
    Done,
    /// Try again, for `reason`, and not before `not_before` (a
    /// `Retry-After` from the server) when given.
    Retry {
        /// Why.
        reason: RetryReason,
        /// The least delay the server asked for.
        not_before: Option<Duration>,
    },
}

/// Decides whether an attempt's outcome is retried. Pluggable: see
/// [`RetryLayer::classifier`](super::RetryLayer::classifier).
pub trait RetryClassifier<B> {
    /// The verdict on `result`.
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Decision;
}

impl<B, F> RetryClassifier<B> for F
where
    F: Fn(Result<&Response<B>, &BoxError>) -> Decision,
{
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Decision {
        self(result)
    }
}

/// The default: retry transport errors, timeouts, 500, 502, 503 and 504,
/// and 429 and 503 after their `Retry-After`; never other statuses, and
/// never an open circuit (it fails fast on purpose).
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRetryClassifier;

impl<B> RetryClassifier<B> for DefaultRetryClassifier {
    fn classify(&self, result: Result<&Response<B>, &BoxError>) -> Decision {
        match result {
            Ok(res) => {
                let status = res.status();
                let retryable = matches!(
                    status,
                    StatusCode::INTERNAL_SERVER_ERROR
                        | StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                        | StatusCode::TOO_MANY_REQUESTS
                );
                if !retryable {
                    return Decision::Done;
                }
                let not_before = match status {
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                        retry_after(res.headers(), SystemTime::now())
                    }
                    _ => None,
                };
                Decision::Retry {
                    reason: RetryReason::Status(status),
                    not_before,
                }
            }
            Err(e) if e.is::<CircuitOpen>() => Decision::Done,
            Err(e) if e.is::<Elapsed>() => Decision::Retry {
                reason: RetryReason::Timeout,
                not_before: None,
            },
            Err(_) => Decision::Retry {
                reason: RetryReason::Transport,
                not_before: None,
            },
        }
    }
}

/// The delay a `Retry-After` header asks for, in either of its forms:
/// delta-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`),
/// the latter measured from `now`. A date in the past means "now".
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a request may be sent twice: idempotent methods (GET, HEAD,
/// OPTIONS, PUT, DELETE, TRACE) always, POST and PATCH only with an
/// `Idempotency-Key` header.
pub fn is_idempotent<B>(req: &Request<B>) -> bool {
    match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::OPTIONS
        | Method::PUT
        | Method::DELETE
        | Method::TRACE => true,
        _ => req.headers().contains_key("idempotency-key"),
    }
}
