//! The error answers both kinds of server layer give: a JSON body for
//! HTTP callers, a trailers-only gRPC status for gRPC callers.
//!
//! A gRPC client reads `grpc-status`, not the HTTP status: a JSON `401`
//! reaches it as a protocol error (tonic says `UNKNOWN` or `INTERNAL`),
//! hiding that the token was the problem. So each refusal looks at the
//! request's `content-type` and answers a gRPC request the way a gRPC
//! server refuses a call before any message: HTTP 200, `content-type:
//! application/grpc`, `grpc-status` and `grpc-message` in the headers, and
//! an empty body (gRPC's PROTOCOL-HTTP2.md calls it "Trailers-Only").

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

/// `{"error": code, "message": message}` with `status`.
pub(crate) fn json_error<B: From<String>>(
    status: StatusCode,
    code: &str,
    message: &str,
) -> Response<B> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut res = Response::new(B::from(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The gRPC status codes this crate answers with (a subset of gRPC's
/// `google.rpc.Code`), numbered as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrpcCode {
    /// 7: a known caller that may not do this (HTTP's 403).
    PermissionDenied = 7,
    /// 13: this server is set up wrong (HTTP's 500).
    Internal = 13,
    /// 16: the caller did not prove who it is (HTTP's 401).
    Unauthenticated = 16,
}

/// Whether the request is a gRPC call: `content-type` is
/// `application/grpc`, or that with a `+codec` or `;parameters` suffix
/// (`application/grpc+proto`). `application/grpc-web` is not: its callers
/// read statuses from the body, which this crate does not write.
pub(crate) fn is_grpc(request_headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(value) = request_headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    // Media types are case-insensitive (RFC 9110 §8.3.1).
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// A trailers-only gRPC answer: HTTP 200, `content-type:
/// application/grpc`, `grpc-status: code`, `grpc-message: message`
/// percent-encoded, and an empty body.
pub(crate) fn grpc_error<B: From<String>>(code: GrpcCode, message: &str) -> Response<B> {
    let mut res = Response::new(B::from(String::new()));
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(code as u16));
    // Percent-encoded text is visible ASCII, always a valid header value.
    if let Ok(value) = HeaderValue::try_from(percent_encode(message)) {
        headers.insert("grpc-message", value);
    }
    res
}

/// `message` with every byte outside visible ASCII and space (0x20 to
/// 0x7E), and `%` itself, written `%XX`, as gRPC's `grpc-message` wants.
fn percent_encode(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7E).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0F)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        for grpc in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
            "Application/GRPC",
        ] {
            assert!(is_grpc(&content_type(grpc)), "{grpc}");
        }
        for other in [
            "application/json",
            "application/grpc-web",
            "application/grpcx",
            "application/grp",
            "text/plain",
        ] {
            assert!(!is_grpc(&content_type(other)), "{other}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("plain text `ok`"), "plain text `ok`");
        assert_eq!(percent_encode("100%"), "100%25");
        assert_eq!(percent_encode("a\nb"), "a%0Ab");
        assert_eq!(percent_encode("cut…"), "cut%E2%80%A6");
        assert_eq!(percent_encode("\u{7f}"), "%7F");
    }

    #[test]
    fn grpc_error_is_trailers_only() {
        let res: Response<String> = grpc_error(GrpcCode::Unauthenticated, "no token\r\n");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], "16");
        assert_eq!(res.headers()["grpc-message"], "no token%0D%0A");
        assert!(res.body().is_empty());
    }
}
