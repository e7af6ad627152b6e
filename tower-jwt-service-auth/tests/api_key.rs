//! The API-key layers: one test per behaviour. The handler behind the
//! server layer counts its calls, so every rejection test also shows that
//! a refused request never reaches it.
//!
//! Long on purpose: one short test per behaviour of one layer pair, in
//! one list.

use std::cell::RefCell;
use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};

use http::{HeaderMap, Request, Response, StatusCode};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_service_auth::api_key::{
    ApiKeyClientLayer, ApiKeyIdentity, ApiKeyLayer, ApiKeyStats, ApiKeys, ClientConfigError,
    MAX_HEADER_BYTES, Rejection,
};

const ORDER_V1: &str = "order-v1-9f3Kq2LmX7vB4tR8";
const ORDER_V2: &str = "order-v2-Hc6Wn1Pz5sJd0yQe";
const USER_V1: &str = "user-v1-Ta8Gm3Vx2Nb7Lk4R";

/// order-service in the middle of a rotation from v1 to v2; user-service
/// with one key.
fn keys() -> ApiKeys {
    ApiKeys::new()
        .with_key("order-service", "v1", ORDER_V1)
        .with_key("order-service", "v2", ORDER_V2)
        .with_key("user-service", "v1", USER_V1)
}

fn request(headers: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::get("/notifications");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(String::new()).unwrap()
}

/// What came back, what reached the handler, and the layer's counters.
struct Outcome {
    res: Response<String>,
    handler_calls: usize,
    /// The identity and request headers the handler saw, if called.
    seen: Option<(ApiKeyIdentity, HeaderMap)>,
    stats: ApiKeyStats,
}

async fn send_with(keys: ApiKeys, req: Request<String>) -> Outcome {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = ApiKeyLayer::new(keys);
    let stats = layer.stats();
    let handler = {
        let calls = calls.clone();
        service_fn(move |req: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let identity = req.extensions().get::<ApiKeyIdentity>().cloned().unwrap();
                let mut res = Response::new("handled".to_owned());
                res.extensions_mut()
                    .insert((identity, req.headers().clone()));
                Ok::<_, Infallible>(res)
            }
        })
    };
    let res = layer.layer(handler).oneshot(req).await.unwrap();
    let seen = res
        .extensions()
        .get::<(ApiKeyIdentity, HeaderMap)>()
        .cloned();
    Outcome {
        res,
        handler_calls: calls.load(Ordering::SeqCst),
        seen,
        stats,
    }
}

async fn send(headers: &[(&str, &str)]) -> Outcome {
    send_with(keys(), request(headers)).await
}

fn identity(service: &str, version: &str) -> ApiKeyIdentity {
    ApiKeyIdentity {
        service: service.to_owned(),
        key_version: version.to_owned(),
    }
}

/// Asserts a 401 that never reached the handler, with `error` in the
/// JSON body, counted under `reason`.
fn assert_refused(outcome: &Outcome, error: &str, reason: Rejection) {
    let res = &outcome.res;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(outcome.handler_calls, 0, "the handler must not be called");
    assert_eq!(res.headers()["content-type"], "application/json");
    assert!(res.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = serde_json::from_str(res.body()).unwrap();
    assert_eq!(body["error"], error);
    assert!(body["message"].is_string());
    assert_eq!(outcome.stats.rejected(reason), 1);
    assert_eq!(outcome.stats.rejected_total(), 1);
    assert_eq!(outcome.stats.accepted(), 0);
}

// === accepted ===

#[tokio::test]
async fn accepts_the_current_key_version() {
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", ORDER_V2)]).await;
    assert_eq!(out.res.status(), StatusCode::OK);
    assert_eq!(out.handler_calls, 1);
    assert_eq!(out.seen.unwrap().0, identity("order-service", "v2"));
    assert_eq!(out.stats.accepted(), 1);
    assert_eq!(out.stats.rejected_total(), 0);
}

#[tokio::test]
async fn accepts_the_previous_version_during_rotation_and_says_which() {
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", ORDER_V1)]).await;
    assert_eq!(out.res.status(), StatusCode::OK);
    assert_eq!(out.handler_calls, 1);
    assert_eq!(out.seen.unwrap().0, identity("order-service", "v1"));
}

#[tokio::test]
async fn refuses_a_version_once_it_is_removed() {
    let mut keys = keys();
    assert!(keys.remove("order-service", "v1"));
    assert_eq!(keys.versions("order-service").collect::<Vec<_>>(), ["v2"]);
    let req = request(&[("x-service-name", "order-service"), ("x-api-key", ORDER_V1)]);
    let out = send_with(keys, req).await;
    assert_refused(&out, "invalid_api_key", Rejection::WrongKey);
}

#[tokio::test]
async fn accepts_a_key_of_exactly_the_maximum_length() {
    let key = "k".repeat(MAX_HEADER_BYTES);
    let keys = ApiKeys::new().with_key("order-service", "v1", &key);
    let req = request(&[("x-service-name", "order-service"), ("x-api-key", &key)]);
    let out = send_with(keys, req).await;
    assert_eq!(out.res.status(), StatusCode::OK);
}

#[tokio::test]
async fn hands_the_handler_the_key_marked_sensitive() {
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", ORDER_V2)]).await;
    let (_, headers) = out.seen.unwrap();
    assert!(headers["x-api-key"].is_sensitive());
    assert!(!format!("{headers:?}").contains(ORDER_V2));
}

// === refused ===

#[tokio::test]
async fn missing_key_is_401_with_challenge_and_exact_json_body() {
    let out = send(&[("x-service-name", "order-service")]).await;
    assert_refused(&out, "missing_api_key", Rejection::MissingKey);
    assert_eq!(out.res.headers()["www-authenticate"], "ApiKey");
    assert_eq!(
        out.res.body(),
        r#"{"error":"missing_api_key","message":"an API key is required in x-api-key"}"#
    );
}

#[tokio::test]
async fn empty_key_counts_as_missing() {
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", "")]).await;
    assert_refused(&out, "missing_api_key", Rejection::MissingKey);
}

#[tokio::test]
async fn missing_service_name_is_401_missing_api_key() {
    let out = send(&[("x-api-key", ORDER_V2)]).await;
    assert_refused(&out, "missing_api_key", Rejection::MissingServiceName);
    assert_eq!(out.res.headers()["www-authenticate"], "ApiKey");
}

#[tokio::test]
async fn wrong_key_is_401_invalid_api_key() {
    let out = send(&[
        ("x-service-name", "order-service"),
        ("x-api-key", "guessed-key"),
    ])
    .await;
    assert_refused(&out, "invalid_api_key", Rejection::WrongKey);
    assert_eq!(
        out.res.headers()["www-authenticate"],
        r#"ApiKey error="invalid_api_key""#
    );
}

#[tokio::test]
async fn right_key_for_another_service_is_401() {
    // user-service's valid key, claimed by order-service.
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", USER_V1)]).await;
    assert_refused(&out, "invalid_api_key", Rejection::WrongKey);
}

#[tokio::test]
async fn unknown_service_is_401_and_answers_exactly_like_a_wrong_key() {
    let unknown = send(&[
        ("x-service-name", "billing-service"),
        ("x-api-key", ORDER_V2),
    ])
    .await;
    assert_refused(&unknown, "invalid_api_key", Rejection::UnknownService);

    let wrong = send(&[
        ("x-service-name", "order-service"),
        ("x-api-key", "guessed"),
    ])
    .await;
    assert_eq!(unknown.res.body(), wrong.res.body());
    assert_eq!(unknown.res.headers(), wrong.res.headers());
}

#[tokio::test]
async fn two_api_key_headers_are_401_even_if_one_is_right() {
    let out = send(&[
        ("x-service-name", "order-service"),
        ("x-api-key", "guessed"),
        ("x-api-key", ORDER_V2),
    ])
    .await;
    assert_refused(&out, "invalid_api_key", Rejection::SeveralHeaders);
}

#[tokio::test]
async fn two_service_name_headers_are_401() {
    let out = send(&[
        ("x-service-name", "order-service"),
        ("x-service-name", "user-service"),
        ("x-api-key", ORDER_V2),
    ])
    .await;
    assert_refused(&out, "invalid_api_key", Rejection::SeveralHeaders);
}

#[tokio::test]
async fn oversized_key_is_401() {
    let key = "k".repeat(MAX_HEADER_BYTES + 1);
    let out = send(&[("x-service-name", "order-service"), ("x-api-key", &key)]).await;
    assert_refused(&out, "invalid_api_key", Rejection::TooLarge);
}

#[tokio::test]
async fn oversized_service_name_is_401() {
    let name = "s".repeat(MAX_HEADER_BYTES + 1);
    let out = send(&[("x-service-name", &name), ("x-api-key", ORDER_V2)]).await;
    assert_refused(&out, "invalid_api_key", Rejection::TooLarge);
}

#[tokio::test]
async fn non_ascii_key_is_401() {
    let mut req = request(&[("x-service-name", "order-service")]);
    let value = http::HeaderValue::from_bytes("schlüssel".as_bytes()).unwrap();
    req.headers_mut().insert("x-api-key", value);
    let out = send_with(keys(), req).await;
    assert_refused(&out, "invalid_api_key", Rejection::Malformed);
}

// === the store ===

#[test]
fn the_store_holds_digests_only() {
    let keys = keys();
    let debug = format!("{keys:?} {keys:#?}");
    for key in [ORDER_V1, ORDER_V2, USER_V1] {
        assert!(!debug.contains(key), "{debug}");
        let digest = ApiKeys::digest(key);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!debug.contains(&hex), "{debug}");
    }
    assert_eq!(
        format!("{keys:?}"),
        r#"ApiKeys {"order-service": ["v1", "v2"], "user-service": ["v1"]}"#
    );
}

#[test]
fn a_digest_is_accepted_like_the_key_it_was_made_from() {
    let keys = ApiKeys::new().with_digest("order-service", "v3", ApiKeys::digest(ORDER_V2));
    assert_eq!(
        keys.verify("order-service", ORDER_V2.as_bytes()),
        Ok(identity("order-service", "v3"))
    );
}

#[test]
fn adding_a_version_again_replaces_its_key() {
    let keys = keys().with_key("order-service", "v2", "order-v2-replacement");
    assert_eq!(
        keys.versions("order-service").collect::<Vec<_>>(),
        ["v1", "v2"]
    );
    assert_eq!(
        keys.verify("order-service", ORDER_V2.as_bytes()),
        Err(Rejection::WrongKey)
    );
    assert!(
        keys.verify("order-service", b"order-v2-replacement")
            .is_ok()
    );
}

// === logs ===

#[tokio::test]
async fn rejection_is_logged_with_reason_and_claimed_service_but_never_the_key() {
    let logs = capture_logs();
    send(&[("x-service-name", "order-service"), ("x-api-key", USER_V1)]).await;
    let text = logs.text();
    assert!(
        text.contains(
            "INFO tower_jwt_service_auth::api_key: API key rejected reason=\"wrong_key\" service=\"order-service\""
        ),
        "{text}"
    );
    assert!(!text.contains(USER_V1), "{text}");
}

#[tokio::test]
async fn acceptance_is_logged_at_debug_with_the_matching_version() {
    let logs = capture_logs();
    send(&[("x-service-name", "order-service"), ("x-api-key", ORDER_V1)]).await;
    let text = logs.text();
    assert!(
        text.contains(
            "DEBUG tower_jwt_service_auth::api_key: API key accepted service=order-service key_version=v1"
        ),
        "{text}"
    );
    assert!(!text.contains(ORDER_V1), "{text}");
}

// === client ===

#[tokio::test]
async fn client_adds_both_headers_and_marks_the_key_sensitive() {
    let layer = ApiKeyClientLayer::new("order-service", ORDER_V2).unwrap();
    let client = layer.layer(service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(req.headers().clone())
    }));
    let headers = client.oneshot(request(&[])).await.unwrap();
    assert_eq!(headers["x-service-name"], "order-service");
    assert!(!headers["x-service-name"].is_sensitive());
    assert_eq!(headers["x-api-key"], ORDER_V2);
    assert!(headers["x-api-key"].is_sensitive());
}

#[tokio::test]
async fn client_replaces_a_key_already_on_the_request() {
    let layer = ApiKeyClientLayer::new("order-service", ORDER_V2).unwrap();
    let client = layer.layer(service_fn(|req: Request<String>| async move {
        Ok::<_, Infallible>(req.headers().clone())
    }));
    let headers = client
        .oneshot(request(&[("x-api-key", "stale")]))
        .await
        .unwrap();
    assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
    assert_eq!(headers["x-api-key"], ORDER_V2);
}

#[tokio::test]
async fn client_and_server_agree() {
    let client = ApiKeyClientLayer::new("order-service", ORDER_V1).unwrap();
    let server = ApiKeyLayer::new(keys()).layer(service_fn(|req: Request<String>| async move {
        let caller = req.extensions().get::<ApiKeyIdentity>().unwrap().clone();
        Ok::<_, Infallible>(Response::new(caller.key_version))
    }));
    let res = client.layer(server).oneshot(request(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.body(), "v1");
}

#[test]
fn client_layer_debug_hides_the_key() {
    let layer = ApiKeyClientLayer::new("order-service", ORDER_V2).unwrap();
    let debug = format!("{layer:?}");
    assert!(!debug.contains(ORDER_V2), "{debug}");
    assert!(debug.contains("order-service"), "{debug}");
}

#[test]
fn client_refuses_a_key_with_a_trailing_newline_without_echoing_it() {
    let err = ApiKeyClientLayer::new("order-service", "order-v2-secret\n").unwrap_err();
    assert!(
        matches!(err, ClientConfigError::InvalidValue { ref header, .. } if header == "x-api-key")
    );
    assert!(!err.to_string().contains("order-v2-secret"), "{err}");
}

#[test]
fn client_refuses_an_empty_service_name() {
    let err = ApiKeyClientLayer::new("", ORDER_V2).unwrap_err();
    assert!(
        matches!(err, ClientConfigError::InvalidValue { ref header, .. } if header == "x-service-name")
    );
}

#[test]
fn from_env_with_a_missing_variable_names_it() {
    // Only reads: setting variables needs `unsafe` in Rust 2024, which the
    // crate forbids, so the success path is tested through `new`.
    let err = ApiKeyClientLayer::from_env(
        "TOWER_JWT_TEST_SURELY_UNSET_4711",
        "TOWER_JWT_TEST_SURELY_UNSET_4712",
    )
    .unwrap_err();
    assert_eq!(
        err,
        ClientConfigError::MissingEnv("TOWER_JWT_TEST_SURELY_UNSET_4711".to_owned())
    );
    assert_eq!(
        err.to_string(),
        "environment variable TOWER_JWT_TEST_SURELY_UNSET_4711 is not set"
    );
}

// === log capture ===
//
// One global subscriber per test binary, writing into a buffer each test
// installs for its own thread: a scoped `set_default` subscriber can miss
// events when other test threads register the same callsites first
// (tracing caches each callsite's interest). `#[tokio::test]` runs on the
// test's own thread, so the buffer sees exactly that test's events.

thread_local! {
    static LOG_BUFFER: RefCell<Option<Arc<std::sync::Mutex<String>>>> = const { RefCell::new(None) };
}

struct Logs(Arc<std::sync::Mutex<String>>);

impl Logs {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

fn capture_logs() -> Logs {
    static INIT: Once = Once::new();
    INIT.call_once(|| tracing::subscriber::set_global_default(LineSubscriber).unwrap());
    let buffer = Arc::new(std::sync::Mutex::new(String::new()));
    LOG_BUFFER.with(|b| *b.borrow_mut() = Some(buffer.clone()));
    Logs(buffer)
}

/// Writes each event as `LEVEL target: message field=value ...`.
struct LineSubscriber;

impl tracing::Subscriber for LineSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let meta = event.metadata();
        let mut line = Line {
            message: String::new(),
            fields: String::new(),
        };
        event.record(&mut line);
        let text = format!(
            "{} {}: {}{}\n",
            meta.level(),
            meta.target(),
            line.message,
            line.fields
        );
        LOG_BUFFER.with(|b| {
            if let Some(buffer) = &*b.borrow() {
                buffer.lock().unwrap().push_str(&text);
            }
        });
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

struct Line {
    message: String,
    fields: String,
}

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}
