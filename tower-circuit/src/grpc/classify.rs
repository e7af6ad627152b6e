//! What a gRPC status code means to a breaker.

use http::{HeaderMap, HeaderName, StatusCode};
use tonic::Code;

use crate::classify::Outcome;
use crate::timeout::BUDGET_HEADER;

/// The header (or trailer) that carries a call's gRPC status code.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The header a gRPC client sends its deadline in.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Decides what a finished gRPC call's status code means to the breaker.
///
/// Implemented by [`ServerCodesAsFailures`], the default, and by any
/// `Fn(tonic::Code) -> Outcome`:
///
/// ```
/// use tonic::Code;
/// use tower_circuit::breaker::{Breaker, Config};
/// use tower_circuit::classify::Outcome;
/// use tower_circuit::grpc::{ClassifyCode, ServerCodesAsFailures};
///
/// // RESOURCE_EXHAUSTED is a quota the caller ran into, for this service.
/// let classify = |code: Code| match code {
///     Code::ResourceExhausted => Outcome::Success,
///     other => ServerCodesAsFailures.classify(other),
/// };
/// let breaker = Breaker::new("user-service", Config::default()).unwrap();
/// let layer = breaker.grpc_layer().classifier(classify);
/// # drop(layer);
/// ```
///
/// One outcome is decided before the classifier is asked, as for HTTP
/// (see [`crate::breaker`]): `DEADLINE_EXCEEDED` that the server marks as
/// the caller's budget running out is ignored.
pub trait ClassifyCode {
    /// What `code` says about the dependency's health.
    fn classify(&self, code: Code) -> Outcome;
}

impl<F> ClassifyCode for F
where
    F: Fn(Code) -> Outcome,
{
    fn classify(&self, code: Code) -> Outcome {
        self(code)
    }
}

/// The default rule: codes that say the server, not the caller, failed
/// are failures.
///
/// | outcome | codes |
/// | --- | --- |
/// | success | `OK`; the caller's mistakes: `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `FAILED_PRECONDITION`, `OUT_OF_RANGE`; and `ABORTED` |
/// | failure | `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `RESOURCE_EXHAUSTED`, `DATA_LOSS`, `UNIMPLEMENTED` |
/// | ignored | `CANCELLED` |
///
/// The caller's mistakes count as successes, as a 4xx does over HTTP: the
/// server was well enough to judge the request, and a half-open probe that
/// gets `NOT_FOUND` has shown it.
///
/// The three codes whose side is not obvious:
/// - `ABORTED` is a conflict between concurrent callers (a transaction
///   aborted, a version check lost), HTTP's `409`: the server worked, so
///   it is a success.
/// - `UNIMPLEMENTED` is a failure. The server does not serve the contract
///   the caller was built against: a bad deploy, or a request routed to
///   something that is not this service (gRPC maps a bare HTTP `404` to
///   it). HTTP's counterpart, `501`, counts as a failure too. The price:
///   a client calling a method its server never had opens the circuit, as
///   it should learn quickly.
/// - `CANCELLED` is ignored. Sent by a server, it means the call was
///   abandoned (the caller went away, or a server-side timeout that
///   reports itself as a cancellation): it says how long the caller
///   waited, not how the server is doing.
///
/// A `grpc-status` that is not a number from 0 to 16 reads as `UNKNOWN`,
/// a failure.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCodesAsFailures;

impl ClassifyCode for ServerCodesAsFailures {
    fn classify(&self, code: Code) -> Outcome {
        match code {
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Aborted => Outcome::Success,
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::DataLoss
            | Code::Unimplemented => Outcome::Failure,
            Code::Cancelled => Outcome::Ignored,
        }
    }
}

/// The code in `grpc-status`, if the map has one.
pub(crate) fn status_code(map: &HeaderMap) -> Option<Code> {
    map.get(GRPC_STATUS)
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The code gRPC gives an HTTP answer that carries no `grpc-status`
/// (<https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>):
/// such an answer comes from something in front of the server (a proxy, a
/// load balancer) or from something that is not a gRPC server at all.
pub(crate) fn code_for_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// Whether the server marked the answer as the caller's budget having run
/// out there (`x-request-budget-ms: 0`, as the server deadline layer does).
pub(crate) fn budget_spent_mark(map: &HeaderMap) -> bool {
    map.get(BUDGET_HEADER).map(|v| v.as_bytes()) == Some(b"0")
}

/// Classifies `code`, after the one rule no classifier may change: a
/// `DEADLINE_EXCEEDED` that the server marked as the caller's budget
/// running out, on a call that had a deadline to send, is ignored.
pub(crate) fn outcome<C: ClassifyCode>(classifier: &C, code: Code, budget_spent: bool) -> Outcome {
    if code == Code::DeadlineExceeded && budget_spent {
        return Outcome::Ignored;
    }
    classifier.classify(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_the_documented_outcome() {
        let expected = [
            (Code::Ok, Outcome::Success),
            (Code::Cancelled, Outcome::Ignored),
            (Code::Unknown, Outcome::Failure),
            (Code::InvalidArgument, Outcome::Success),
            (Code::DeadlineExceeded, Outcome::Failure),
            (Code::NotFound, Outcome::Success),
            (Code::AlreadyExists, Outcome::Success),
            (Code::PermissionDenied, Outcome::Success),
            (Code::ResourceExhausted, Outcome::Failure),
            (Code::FailedPrecondition, Outcome::Success),
            (Code::Aborted, Outcome::Success),
            (Code::OutOfRange, Outcome::Success),
            (Code::Unimplemented, Outcome::Failure),
            (Code::Internal, Outcome::Failure),
            (Code::Unavailable, Outcome::Failure),
            (Code::DataLoss, Outcome::Failure),
            (Code::Unauthenticated, Outcome::Success),
        ];
        for (code, outcome) in expected {
            assert_eq!(ServerCodesAsFailures.classify(code), outcome, "{code:?}");
        }
    }

    #[test]
    fn http_answers_without_a_status_follow_grpc_mapping() {
        let expected = [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (418, Code::Unknown),
        ];
        for (status, code) in expected {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for_http_status(status), code, "{status}");
        }
    }

    #[test]
    fn a_spent_budget_mark_ignores_deadline_exceeded_only() {
        let all_failures = |_: Code| Outcome::Failure;
        assert_eq!(
            outcome(&all_failures, Code::DeadlineExceeded, true),
            Outcome::Ignored
        );
        assert_eq!(
            outcome(&all_failures, Code::DeadlineExceeded, false),
            Outcome::Failure
        );
        assert_eq!(
            outcome(&all_failures, Code::Unavailable, true),
            Outcome::Failure
        );
    }

    #[test]
    fn a_status_that_is_not_a_code_reads_as_unknown() {
        let mut map = HeaderMap::new();
        assert_eq!(status_code(&map), None);
        map.insert(GRPC_STATUS, "14".parse().unwrap());
        assert_eq!(status_code(&map), Some(Code::Unavailable));
        map.insert(GRPC_STATUS, "fourteen".parse().unwrap());
        assert_eq!(status_code(&map), Some(Code::Unknown));
    }
}
