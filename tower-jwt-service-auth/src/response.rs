//! The JSON error answers of the server layers.

use http::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::verify::Rejection;

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

/// The RFC 6750 answer to a refused token.
pub(crate) fn rejection<B: From<String>>(rejection: &Rejection) -> Response<B> {
    let mut res = json_error(
        rejection.status(),
        rejection.body_error(),
        &rejection.to_string(),
    );
    if let Ok(value) = HeaderValue::from_str(&rejection.www_authenticate()) {
        res.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
    res
}
