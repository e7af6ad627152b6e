//! The JSON client against a real axum server on 127.0.0.1:0 (feature
//! `client`). Real time, with millisecond settings.
#![cfg(feature = "client")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tower_circuit::breaker::{Breaker, CircuitState, Config, Window};
use tower_circuit::client::{BuildError, ClientError, ServiceClient};
use tower_circuit::retry::{Backoff, RetryLayer};
use tower_circuit::timeout::ByMethod;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// A server whose `/flaky` fails its first `fail_first` calls with 503,
/// counting every call.
#[derive(Clone, Default)]
struct Server {
    calls: Arc<AtomicUsize>,
    fail_first: usize,
}

async fn serve(server: Server) -> String {
    async fn user() -> Json<User> {
        Json(User {
            id: 7,
            name: "Ada".into(),
        })
    }
    async fn create(Json(user): Json<User>) -> (StatusCode, Json<User>) {
        (StatusCode::CREATED, Json(user))
    }
    async fn flaky(State(s): State<Server>) -> Result<Json<User>, (StatusCode, &'static str)> {
        let n = s.calls.fetch_add(1, Ordering::SeqCst);
        if n < s.fail_first {
            Err((StatusCode::SERVICE_UNAVAILABLE, "busy"))
        } else {
            Ok(Json(User {
                id: n as u64,
                name: "late".into(),
            }))
        }
    }
    async fn missing() -> (StatusCode, &'static str) {
        (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#)
    }
    async fn slow() -> Json<User> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Json(User {
            id: 0,
            name: "slow".into(),
        })
    }
    async fn big() -> String {
        "x".repeat(10_000)
    }
    let app = Router::new()
        .route("/users/7", get(user))
        .route("/users", axum::routing::post(create))
        .route("/flaky", get(flaky).post(flaky))
        .route("/missing", get(missing))
        .route("/slow", get(slow))
        .route("/big", get(big))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn fast_retries() -> tower_circuit::retry::RetryBuilder {
    RetryLayer::builder("x")
        .backoff(
            Backoff::default()
                .base(Duration::from_millis(5))
                .cap(Duration::from_millis(20)),
        )
        .no_budget()
}

#[tokio::test]
async fn get_parses_json() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url).build().unwrap();
    let user: User = client.get("/users/7").await.unwrap();
    assert_eq!(
        user,
        User {
            id: 7,
            name: "Ada".into()
        }
    );
}

#[tokio::test]
async fn post_sends_json_and_parses_the_answer() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url).build().unwrap();
    let sent = User {
        id: 9,
        name: "Grace".into(),
    };
    let back: User = client.post("/users", &sent).await.unwrap();
    assert_eq!(back, sent);
}

#[tokio::test]
async fn a_4xx_is_an_error_with_status_and_body_and_is_not_retried() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client.get::<User>("/missing").await.unwrap_err();
    match &err {
        ClientError::Status { status, body } => {
            assert_eq!(*status, StatusCode::NOT_FOUND);
            assert_eq!(&body[..], br#"{"error":"not_found"}"#);
        }
        other => panic!("expected a status error, got {other}"),
    }
    assert_eq!(client.retry_stats().retries, 0);
}

#[tokio::test]
async fn gets_are_retried_through_503s() {
    let server = Server {
        fail_first: 2,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries())
        .build()
        .unwrap();
    let user: User = client.get("/flaky").await.unwrap();
    assert_eq!(user.id, 2, "the third call answered");
    assert_eq!(client.retry_stats().retries, 2);
    assert_eq!(
        client.breaker().stats().failures,
        2,
        "the breaker saw each failed attempt"
    );
}

#[tokio::test]
async fn posts_are_retried_only_with_an_idempotency_key() {
    let server = Server {
        fail_first: 1,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries())
        .build()
        .unwrap();
    let body = User {
        id: 1,
        name: "x".into(),
    };
    let err = client.post::<_, User>("/flaky", &body).await.unwrap_err();
    assert!(matches!(
        err,
        ClientError::Status {
            status: StatusCode::SERVICE_UNAVAILABLE,
            ..
        }
    ));
    let ok: User = client
        .post_idempotent("/flaky", "order-1", &body)
        .await
        .unwrap();
    assert_eq!(ok.id, 1);
    assert_eq!(server.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_open_circuit_fails_fast_with_time_left() {
    let server = Server {
        fail_first: usize::MAX,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries().max_retries(0))
        .breaker(
            Config::default()
                .window(Window::Count { size: 2 })
                .minimum_calls(2),
        )
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(client.get::<User>("/flaky").await.is_err());
    }
    assert_eq!(client.breaker().state(), CircuitState::Open);
    let err = client.get::<User>("/flaky").await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
    assert!(
        err.retry_after()
            .is_some_and(|d| d > Duration::from_secs(29))
    );
    assert_eq!(
        server.calls.load(Ordering::SeqCst),
        2,
        "the server was not called"
    );
}

#[tokio::test]
async fn a_breaker_builder_brings_its_hooks_and_takes_the_clients_name() {
    let server = Server {
        fail_first: usize::MAX,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let changes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = changes.clone();
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries().max_retries(0))
        .breaker_builder(
            Breaker::builder("ignored")
                .config(
                    Config::default()
                        .window(Window::Count { size: 2 })
                        .minimum_calls(2),
                )
                .on_state_change(move |c| {
                    seen.lock()
                        .unwrap()
                        .push((c.name.to_string(), c.from, c.to));
                }),
        )
        .build()
        .unwrap();
    for _ in 0..2 {
        assert!(client.get::<User>("/flaky").await.is_err());
    }
    assert_eq!(client.breaker().state(), CircuitState::Open);
    assert_eq!(
        *changes.lock().unwrap(),
        vec![("users".to_owned(), CircuitState::Closed, CircuitState::Open)]
    );
}

#[tokio::test]
async fn bypassing_the_layers_sends_straight_to_the_server() {
    let server = Server {
        fail_first: 1,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries())
        .bypass_layers()
        .build()
        .unwrap();
    // No retry: the first 503 comes back as it is, and the breaker saw nothing.
    let err = client.get::<User>("/flaky").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
    assert_eq!(client.breaker().stats().calls, 0);
    assert!(client.get::<User>("/flaky").await.is_ok());
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries().max_retries(0))
        .timeouts(ByMethod::default().reads(Duration::from_millis(50)))
        .build()
        .unwrap();
    let err = client.get::<User>("/slow").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn a_body_over_the_cap_fails_the_call() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries().max_retries(0))
        .max_response_body(1_000)
        .build()
        .unwrap();
    let err = client.get::<String>("/big").await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn wrong_json_is_a_decode_error() {
    let url = serve(Server::default()).await;
    let client = ServiceClient::builder("users", url).build().unwrap();
    let err = client.get::<Vec<u32>>("/users/7").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err}");
}

#[test]
fn a_relative_base_url_is_refused() {
    let err = ServiceClient::builder("users", "users.internal")
        .build()
        .unwrap_err();
    assert_eq!(err, BuildError::BaseUrl("users.internal".into()));
}

#[tokio::test]
async fn wire_layers_run_on_every_attempt() {
    let server = Server {
        fail_first: 1,
        ..Server::default()
    };
    let url = serve(server).await;
    let stamped = Arc::new(AtomicUsize::new(0));
    let count = stamped.clone();
    let stamp = tower::layer::layer_fn(move |inner: tower_circuit::client::WireService| {
        let count = count.clone();
        tower::util::MapRequest::new(inner, move |mut req: http::Request<_>| {
            count.fetch_add(1, Ordering::SeqCst);
            req.headers_mut()
                .insert("authorization", "Bearer test".parse().unwrap());
            req
        })
    });
    let client = ServiceClient::builder("users", url)
        .retry(fast_retries())
        .layer(stamp)
        .build()
        .unwrap();
    let _: User = client.get("/flaky").await.unwrap();
    assert_eq!(stamped.load(Ordering::SeqCst), 2, "once per attempt");
}
