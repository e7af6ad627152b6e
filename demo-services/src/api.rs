//! JSON errors and extractors whose rejections are JSON too.
//!
//! axum's own `Json`, `Path` and `Query` extractors answer bad input in
//! plain text; these wrap them so every error a client sees has the shape
//! `{"error": "<code>", "message": "<text>"}` and a 4xx status.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error answer: a status, a stable code and a message for people.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code, e.g. `invalid_request`.
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
    /// For 503s with a known recovery time: whole seconds for `Retry-After`.
    pub retry_after: Option<u64>,
    /// A 504 because the caller's budget ran out: marked with
    /// `x-request-budget-ms: 0`, so the caller's breaker does not count it.
    pub budget_spent: bool,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            budget_spent: false,
        }
    }

    /// 504 `deadline_exceeded`: the caller's budget ran out here.
    pub fn budget_spent(message: impl Into<String>) -> Self {
        ApiError {
            budget_spent: true,
            ..ApiError::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", message)
        }
    }

    /// 400 `invalid_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`, for failures of this service (its database); the
    /// details go to the log, not to the caller.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %crate::telemetry::Escaped(&error), "{context}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}; see the service's log"),
        )
    }

    /// Adds a `Retry-After` of `seconds`.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::internal("database error", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.budget_spent {
            res.headers_mut().insert(
                tower_circuit::timeout::BUDGET_HEADER,
                HeaderValue::from_static("0"),
            );
        }
        res
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                status,
                "payload_too_large",
                "the request body is larger than 1 MiB",
            );
        }
        let code = match rejection {
            JsonRejection::MissingJsonContentType(_) => "unsupported_content_type",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            _ => "invalid_request",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::bad_request(rejection.body_text())
    }
}

/// `axum::Json` with JSON rejections (400, or 413 over the body limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` with JSON rejections.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(value))
    }
}

/// `axum::extract::Query` with JSON rejections.
#[derive(Debug, Clone, Copy)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Query(value))
    }
}

/// The answer for paths no route matches.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The answer for a known path with a method it does not serve.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method",
    )
}

/// The page size of list endpoints when the caller gives no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;

/// The largest `limit` a list endpoint takes; more is a 400 (not clamped,
/// so a caller who asked for 1,000 is not led to think it got all).
pub const MAX_LIMIT: u32 = 100;

/// Where a list page starts and how long it is, from the `limit` and
/// `cursor` query parameters.
///
/// Lists are in id order; a page holds the first `limit` items after the
/// cursor, and its `nextCursor` is the cursor of the next page (`null` on
/// the last). The cursor is opaque to callers: today it is the last id of
/// the page, written in decimal, and anything else is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// How many items, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Items with ids above this one (0 from the start).
    pub after: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: DEFAULT_LIMIT,
            after: 0,
        }
    }
}

impl Page {
    /// Reads the `limit` (default [`DEFAULT_LIMIT`]) and `cursor` (default
    /// the start) query parameters: a 400 for a limit that is not a whole
    /// number from 1 to [`MAX_LIMIT`], or a cursor this service did not
    /// give.
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Page, ApiError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => digits(text, 3)
                .filter(|n| (1..=i64::from(MAX_LIMIT)).contains(n))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let after = match cursor {
            None => 0,
            Some(text) => digits(text, 19).filter(|n| *n > 0).ok_or_else(|| {
                ApiError::bad_request(
                    "cursor is not valid: pass the nextCursor of the previous page as is",
                )
            })?,
        };
        Ok(Page { limit, after })
    }

    /// How many rows to read: one more than the page, to know whether
    /// another page follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the rows read with [`Page::fetch`] to the page, and gives the
    /// next page's cursor when more rows follow.
    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> i64) -> Paged<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|last| id(last).to_string())
        } else {
            None
        };
        Paged {
            items: rows,
            next_cursor,
        }
    }
}

/// A decimal number of 1 to `max_digits` ASCII digits (no sign, no space).
fn digits(text: &str, max_digits: usize) -> Option<i64> {
    if text.is_empty() || text.len() > max_digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Paged<T> {
    /// The items, in id order.
    pub items: Vec<T>,
    /// The cursor of the next page, or `None` on the last.
    pub next_cursor: Option<String>,
}

/// `value` with every object key in camelCase (`times_opened` →
/// `timesOpened`), for JSON made by types that serialize in snake_case:
/// the API's fields are camelCase everywhere.
pub fn camel_case_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (camel_case(&k), camel_case_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_case_keys).collect()),
        other => other,
    }
}

fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors() {
        assert_eq!(Page::parse(None, None).unwrap(), Page::default());
        assert_eq!(
            Page::parse(Some("100"), Some("42")).unwrap(),
            Page {
                limit: 100,
                after: 42
            }
        );
        for bad in ["0", "101", "-1", "+5", "abc", "", " 5", "1e2", "0100"] {
            assert!(Page::parse(Some(bad), None).is_err(), "limit {bad:?}");
        }
        for bad in ["0", "-3", "abc", "", "+7", "99999999999999999999", "1.5"] {
            assert!(Page::parse(None, Some(bad)).is_err(), "cursor {bad:?}");
        }
        let page = Page { limit: 2, after: 0 };
        assert_eq!(
            page.finish(vec![1, 2, 3], |n| *n).next_cursor.as_deref(),
            Some("2")
        );
        assert_eq!(page.finish(vec![1, 2], |n| *n).next_cursor, None);
    }

    #[test]
    fn keys_become_camel_case() {
        let v =
            serde_json::json!({"times_opened": 1, "retry_after": null, "nested": [{"a_b_c": 2}]});
        assert_eq!(
            camel_case_keys(v),
            serde_json::json!({"timesOpened": 1, "retryAfter": null, "nested": [{"aBC": 2}]})
        );
    }
}
