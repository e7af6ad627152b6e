//! Text from a request never reaches a log line unescaped: a token whose
//! `alg`, `sub` or permissions carry a newline and a fake log line is
//! logged on one line, with the newline escaped, and a long value is cut.
//!
//! The logs are written by tracing-subscriber's usual formatter (the one
//! the services use), into a buffer this test reads.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_jwt_service_auth::jwt::claims::{TOKEN_TYPE, unix_seconds};
use tower_jwt_service_auth::jwt::keys::{KeySet, VerifyingKey};
use tower_jwt_service_auth::jwt::server::{RequirePermissionLayer, VerifyLayer};
use tower_jwt_service_auth::jwt::verify::Verifier;
use tracing_subscriber::fmt::MakeWriter;

const SECRET: &[u8] = b"an HS256 secret of at least 32 bytes!";

/// What an attacker wants the log to show as a line of its own.
const FAKE: &str = "2026-01-01T00:00:00.000000Z  INFO user_service: admin login ok";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Runs `body` with this thread's logs going to a buffer, and returns them.
async fn logs_of<F: std::future::Future<Output = ()>>(body: F) -> String {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    body.await;
    drop(guard);
    buffer.text()
}

/// Every line of `logs` is one the layers wrote: none starts with the
/// fake text, and there are exactly `events` lines.
fn assert_one_line_per_event(logs: &str, events: usize) {
    for line in logs.lines() {
        assert!(!line.starts_with("2026-01-01"), "a forged line: {logs}");
    }
    assert_eq!(logs.lines().count(), events, "{logs}");
    assert!(
        logs.contains(r"\n2026-01-01"),
        "the newline is shown escaped: {logs}"
    );
}

/// The user service: HS256 keys, any issuer, `read:users` required. The
/// layer is built inside the capture, so its warning about the missing
/// policy is one of the lines.
async fn send(token: &str, verifier: Verifier) -> StatusCode {
    let svc = ServiceBuilder::new()
        .layer(VerifyLayer::new(verifier))
        .layer(RequirePermissionLayer::new("read:users"))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let req = Request::get("/users/7")
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    svc.oneshot(req).await.unwrap().status()
}

fn verifier() -> Verifier {
    Verifier::new(
        "user-service",
        KeySet::new().with(VerifyingKey::hs256("shared-1", SECRET).unwrap()),
    )
}

fn b64(json: &Value) -> String {
    URL_SAFE_NO_PAD.encode(json.to_string())
}

fn sign(header: &Value, claims: &Value) -> String {
    let message = format!("{}.{}", b64(header), b64(claims));
    let key = EncodingKey::from_secret(SECRET);
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

fn claims(caller: &str, permissions: &[&str]) -> Value {
    let now = unix_seconds(std::time::SystemTime::now());
    json!({
        "sub": caller, "iss": caller, "aud": "user-service",
        "iat": now, "exp": now + 300, "service": true, "permissions": permissions,
    })
}

fn header() -> Value {
    json!({ "alg": "HS256", "typ": TOKEN_TYPE, "kid": "shared-1" })
}

#[tokio::test]
async fn a_forged_alg_with_a_newline_is_logged_on_one_line() {
    let alg = format!("HS256\n{FAKE}");
    let token = format!(
        "{}.{}.",
        b64(&json!({ "alg": alg, "typ": TOKEN_TYPE, "kid": "shared-1" })),
        b64(&claims("order-service", &[]))
    );
    let mut status = None;
    let logs = logs_of(async { status = Some(send(&token, verifier()).await) }).await;
    assert_eq!(status, Some(StatusCode::UNAUTHORIZED));
    // The policy warning, then the refusal.
    assert_one_line_per_event(&logs, 2);
    assert!(logs.contains("disallowed_alg"), "{logs}");
}

#[tokio::test]
async fn a_long_alg_is_cut_in_the_log() {
    let alg = "A".repeat(3000);
    let token = format!(
        "{}.{}.",
        b64(&json!({ "alg": alg, "typ": TOKEN_TYPE, "kid": "shared-1" })),
        b64(&claims("order-service", &[]))
    );
    let logs = logs_of(async {
        send(&token, verifier()).await;
    })
    .await;
    let refusal = logs.lines().find(|l| l.contains("disallowed_alg")).unwrap();
    assert!(refusal.len() < 500, "{} bytes: {refusal}", refusal.len());
    assert!(refusal.contains('…'));
}

#[tokio::test]
async fn a_callers_name_with_a_newline_is_logged_on_one_line() {
    // A shared-secret holder names itself anything; the permission layer
    // logs that name when it refuses.
    let token = sign(&header(), &claims(&format!("order-service\n{FAKE}"), &[]));
    let mut status = None;
    let logs = logs_of(async { status = Some(send(&token, verifier()).await) }).await;
    assert_eq!(status, Some(StatusCode::FORBIDDEN));
    assert_one_line_per_event(&logs, 2);
    assert!(logs.contains("permission denied"), "{logs}");
}

#[tokio::test]
async fn a_trimmed_permission_with_a_newline_is_logged_on_one_line() {
    let token = sign(
        &header(),
        &claims("order-service", &["read:users", &format!("x\n{FAKE}")]),
    );
    let verifier = verifier().grant("order-service", ["read:users"]);
    let mut status = None;
    let logs = logs_of(async { status = Some(send(&token, verifier).await) }).await;
    assert_eq!(status, Some(StatusCode::OK));
    assert_one_line_per_event(&logs, 1);
    assert!(logs.contains("not granted"), "{logs}");
}
