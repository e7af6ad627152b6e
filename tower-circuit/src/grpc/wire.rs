//! The two facts of gRPC's HTTP/2 mapping every layer here needs, with or
//! without the `grpc` feature: which requests are gRPC, and how a status
//! message is written into `grpc-message`.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// Whether a request (or response) with these headers speaks gRPC:
/// `content-type` is `application/grpc`, alone or followed by `+` (a
/// codec, e.g. `+proto`) or `;` (parameters), in any case (media types are
/// case-insensitive). gRPC-Web (`application/grpc-web...`) is not: its
/// trailers travel inside the body, so a trailers-only answer or trailers
/// added by a layer would not reach a gRPC-Web client as it expects.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
/// use tower_circuit::grpc::is_grpc;
///
/// let mut headers = HeaderMap::new();
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
/// assert!(is_grpc(&headers));
/// headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc-web"));
/// assert!(!is_grpc(&headers));
/// ```
pub fn is_grpc(headers: &HeaderMap) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// `message` as gRPC's `grpc-message` carries it (PROTOCOL-HTTP2.md):
/// every byte outside printable ASCII (0x20 to 0x7E), and `%` itself, as
/// `%XX`. The result is always a valid header value.
///
/// ```
/// use tower_circuit::grpc::encode_message;
///
/// assert_eq!(encode_message("no user 7: 50% off\n"), "no user 7: 50%25 off%0A");
/// ```
pub fn encode_message(message: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn grpc_content_types() {
        let is = |ct: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            is_grpc(&h)
        };
        assert!(is("application/grpc"));
        assert!(is("application/grpc+proto"));
        assert!(is("application/grpc;charset=utf-8"));
        assert!(is("Application/GRPC"));
        assert!(!is("application/grpc-web"));
        assert!(!is("application/grpcx"));
        assert!(!is("application/json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn percent_encodes_what_the_spec_asks() {
        assert_eq!(encode_message("plain text 0-9 ~"), "plain text 0-9 ~");
        assert_eq!(encode_message("50%"), "50%25");
        assert_eq!(encode_message("a\r\nb"), "a%0D%0Ab");
        assert_eq!(encode_message("é"), "%C3%A9");
        assert_eq!(encode_message("\u{7f}"), "%7F");
    }
}
