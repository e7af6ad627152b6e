//! The JSON error body both kinds of server layer answer with.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

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
