//! gRPC requests refused by the demo's own stack get gRPC answers: HTTP
//! 200, `content-type: application/grpc`, a `grpc-status` and the refusal's
//! message in `grpc-message`, and an empty body. Never a JSON body or a
//! bare 404, which a gRPC client can only report as a protocol error.
//! REST requests meeting the same refusals still get JSON.
//!
//! In-process: each request goes through the user service's whole stack
//! (`user::app`, or test routes in `server::stack`) with `oneshot`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use bytes::Bytes;
use demo_services::auth::{self, Keys};
use demo_services::db::{Database, Durability};
use demo_services::fault::Faults;
use demo_services::server::{self, MAX_BODY, ServerParts};
use demo_services::user;
use http::header::CONTENT_TYPE;
use http::request::Builder;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use integration_tests::TempDir;
use serde_json::Value;
use tower::ServiceExt;

/// The user service's app over a fresh database, with keys to sign tokens.
struct Users {
    app: Router,
    state: user::State,
    keys: Keys,
    _dir: TempDir,
}

impl Users {
    async fn start() -> Users {
        let dir = TempDir::new();
        let keys = Keys::ephemeral();
        let state = user::State::open(
            &Database::sqlite(dir.path(), Durability::Full),
            &keys,
            Faults::default(),
        )
        .await
        .expect("open the user service");
        Users {
            app: user::app(state.clone()),
            state,
            keys,
            _dir: dir,
        }
    }

    /// The gateway's token (it holds `read:users` and `write:users`).
    fn bearer(&self) -> String {
        let token = self
            .keys
            .token(
                auth::API_GATEWAY,
                auth::USER_SERVICE,
                None,
                Duration::from_secs(300),
            )
            .expect("sign a token");
        format!("Bearer {token}")
    }
}

/// A gRPC call's head: `content-type: application/grpc`, `te: trailers`.
fn grpc(method: &str, path: &str) -> Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header(CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
}

/// Sends `req` through `app`; the answer's head and whole body.
async fn send(app: &Router, req: Request<Body>) -> (http::response::Parts, Bytes) {
    let res = app.clone().oneshot(req).await.unwrap();
    let (head, body) = res.into_parts();
    (head, body.collect().await.unwrap().to_bytes())
}

/// `grpc-message` decoded: `%XX` to the byte, then UTF-8.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Asserts a trailers-only gRPC answer with `code` and `message`.
fn assert_grpc(answer: &(http::response::Parts, Bytes), code: &str, message: &str) {
    let (head, body) = answer;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.headers[CONTENT_TYPE], "application/grpc");
    assert_eq!(head.headers["grpc-status"], code);
    let sent = head.headers["grpc-message"].to_str().unwrap();
    assert_eq!(percent_decode(sent), message);
    assert!(body.is_empty(), "a trailers-only answer has no body");
}

/// Asserts a JSON refusal with `status` and `error`.
fn assert_json(answer: &(http::response::Parts, Bytes), status: StatusCode, error: &str) {
    let (head, body) = answer;
    assert_eq!(head.status, status);
    assert_eq!(head.headers[CONTENT_TYPE], "application/json");
    assert!(!head.headers.contains_key("grpc-status"));
    let json: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["error"], error);
}

// === the user service ===

#[tokio::test]
async fn an_unknown_path_is_unimplemented() {
    let users = Users::start().await;
    let req = grpc("POST", "/user.UserService/Nope")
        .body(Body::empty())
        .unwrap();
    assert_grpc(&send(&users.app, req).await, "12", "no such route");
}

#[tokio::test]
async fn an_unserved_method_is_unimplemented() {
    let users = Users::start().await;
    let req = grpc("DELETE", "/users/1")
        .header("authorization", users.bearer())
        .body(Body::empty())
        .unwrap();
    assert_grpc(
        &send(&users.app, req).await,
        "12",
        "this route does not serve that method",
    );
}

#[tokio::test]
async fn a_rest_path_without_a_token_is_unauthenticated() {
    let users = Users::start().await;
    let req = grpc("GET", "/users/1").body(Body::empty()).unwrap();
    assert_grpc(
        &send(&users.app, req).await,
        "16",
        "a bearer token is required",
    );
}

#[tokio::test]
async fn an_injected_fault_is_unavailable_and_counted_as_a_503() {
    let users = Users::start().await;
    users.state.server.faults.set_error_rate(1.0);
    let req = grpc("GET", "/users/1")
        .header("authorization", users.bearer())
        .body(Body::empty())
        .unwrap();
    assert_grpc(
        &send(&users.app, req).await,
        "14",
        "fault injection: this request was answered 503 on purpose",
    );
    // Metrics see the refusal, not the 200 on the wire.
    let metrics = users.state.server.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total") && l.contains(r#"status="503""#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_rest_request_with_the_same_fault_still_gets_json() {
    let users = Users::start().await;
    users.state.server.faults.set_error_rate(1.0);
    let req = Request::get("/users/1")
        .header("authorization", users.bearer())
        .body(Body::empty())
        .unwrap();
    assert_json(
        &send(&users.app, req).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "injected_fault",
    );
}

#[tokio::test]
async fn a_spent_budget_is_deadline_exceeded_and_says_whose() {
    let users = Users::start().await;
    // Less than the server's least budget: answered at once.
    let req = grpc("GET", "/users/1")
        .header("authorization", users.bearer())
        .header("x-request-budget-ms", "1")
        .body(Body::empty())
        .unwrap();
    let answer = send(&users.app, req).await;
    assert_eq!(answer.0.headers["grpc-status"], "4");
    assert_eq!(answer.0.headers["x-request-budget-ms"], "0");
    assert!(answer.1.is_empty());
}

#[tokio::test]
async fn a_rest_answer_to_a_grpc_request_is_unknown() {
    // /health answers 200 JSON; a gRPC caller could not read it.
    let users = Users::start().await;
    let req = grpc("GET", "/health").body(Body::empty()).unwrap();
    assert_grpc(&send(&users.app, req).await, "2", "HTTP 200 OK");
}

// === test routes in the same stack ===

/// Test routes behind the common stack (public, so no token is needed):
/// one panics, one reads its body, one answers in gRPC with a message
/// and a trailer.
fn test_stack() -> Router {
    let parts = ServerParts::new(auth::USER_SERVICE, &Keys::ephemeral(), Faults::default());
    let public = Router::new()
        .route(
            "/panic",
            get(|| async {
                panic!("on purpose");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .route(
            "/upload",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/grpc",
            post(|| async {
                let mut res = Response::new(Body::new(GrpcBody { step: 0 }));
                res.headers_mut()
                    .insert(CONTENT_TYPE, "application/grpc".parse().unwrap());
                res
            }),
        );
    server::stack(Router::new(), public, &parts)
}

#[tokio::test]
async fn a_panic_is_internal() {
    let app = test_stack();
    let req = grpc("GET", "/panic").body(Body::empty()).unwrap();
    assert_grpc(
        &send(&app, req).await,
        "13",
        "the service failed while answering; see its log",
    );
    let rest = Request::get("/panic").body(Body::empty()).unwrap();
    assert_json(
        &send(&app, rest).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
    );
}

#[tokio::test]
async fn an_oversized_body_is_resource_exhausted() {
    let app = test_stack();
    let req = grpc("POST", "/upload")
        .body(Body::from(vec![0u8; MAX_BODY + 1]))
        .unwrap();
    // axum's own refusal is plain text: the status names it.
    assert_grpc(&send(&app, req).await, "8", "HTTP 413 Payload Too Large");
    let fits = grpc("POST", "/upload")
        .body(Body::from(vec![0u8; 16]))
        .unwrap();
    assert_eq!(send(&app, fits).await.0.headers["grpc-status"], "2");
}

#[tokio::test]
async fn a_grpc_answer_passes_untouched_with_its_trailers() {
    let app = test_stack();
    let req = grpc("POST", "/grpc").body(Body::empty()).unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!res.headers().contains_key("grpc-status"));
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["grpc-status"], "0");
    assert_eq!(collected.to_bytes(), GrpcBody::MESSAGE);
}

/// One gRPC message, then `grpc-status: 0` in the trailers: a streamed
/// answer as tonic writes it.
struct GrpcBody {
    step: u8,
}

impl GrpcBody {
    /// A length-prefixed message of 2 bytes.
    const MESSAGE: &'static [u8] = &[0, 0, 0, 0, 2, 8, 1];
}

impl http_body::Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.step += 1;
        Poll::Ready(match self.step {
            1 => Some(Ok(Frame::data(Bytes::from_static(GrpcBody::MESSAGE)))),
            2 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", "0".parse().unwrap());
                Some(Ok(Frame::trailers(trailers)))
            }
            _ => None,
        })
    }
}
