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
    /// A gRPC server answered with a retryable `grpc-status` (a code, e.g.
    /// 14 for `UNAVAILABLE`).
    GrpcStatus(u16),
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::Transport => f.write_str("transport error"),
            RetryReason::Timeout => f.write_str("attempt timed out"),
            RetryReason::Status(s) => write!(f, "status {}", s.as_u16()),
            RetryReason::GrpcStatus(code) => write!(f, "grpc-status {code}"),
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

/// The default: retry transport errors, timeouts, 500, 502, 503 and 504
/// (503 not before its `Retry-After`), and 429 only with a `Retry-After`
/// and not before it; never other statuses, never an open circuit (it
/// fails fast on purpose), and never a deadline [`Elapsed`] (the whole
/// call's budget is spent, so no further attempt can finish in time).
///
/// A 429 without `Retry-After` is returned, not retried: it is a 4xx (the
/// caller's request rate is the problem, not the dependency's health), the
/// server named no time at which a retry is safe, and retrying blind into
/// a server that is shedding load is the amplification budgets exist to
/// prevent.
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
                if status == StatusCode::TOO_MANY_REQUESTS && not_before.is_none() {
                    return Decision::Done;
                }
                Decision::Retry {
                    reason: RetryReason::Status(status),
                    not_before,
                }
            }
            Err(e) => classify_error(e),
        }
    }
}

/// The verdict on an error, the same for HTTP and gRPC: an open circuit
/// never (it fails fast on purpose), a deadline [`Elapsed`] never, an
/// attempt's own timeout and any other error (the transport) yes.
pub(crate) fn classify_error(e: &BoxError) -> Decision {
    match e.downcast_ref::<Elapsed>() {
        // The whole call's deadline ran out (here or, as a downstream
        // server said, there): no attempt can still finish in time.
        Some(elapsed) if elapsed.is_deadline() => Decision::Done,
        Some(_) => Decision::Retry {
            reason: RetryReason::Timeout,
            not_before: None,
        },
        None if e.is::<CircuitOpen>() => Decision::Done,
        None => Decision::Retry {
            reason: RetryReason::Transport,
            not_before: None,
        },
    }
}

/// The largest delay-seconds value kept as is; larger ones are clamped to
/// it, as RFC 9111 §1.2.2 tells caches to do with delta-seconds: a server
/// asking for "very long" gets very long, never "not at all".
pub const MAX_RETRY_AFTER_SECS: u64 = 2_147_483_648;

/// The delay a `Retry-After` header asks for, in either of its forms:
/// delay-seconds (`120`, RFC 9110 §10.2.3: `1*DIGIT`, nothing else) or an
/// HTTP-date (`Wed, 21 Oct 2026 07:28:00 GMT`), the latter measured from
/// `now`. A date in the past means "now". A number too large for any clock
/// is clamped to [`MAX_RETRY_AFTER_SECS`], so it is never read as absent
/// and retried early. Anything else (`+5`, `-1`, `5.0`, ` 5`) is not a
/// `Retry-After` at all and gives `None`.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?;
    if let Some(secs) = digits(value) {
        return Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// `1*DIGIT` as a number, saturating at `u64::MAX`; `None` for anything
/// else, including a sign or spaces (`str::parse` accepts a leading `+`).
pub(crate) fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
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
