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
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tower::ServiceBuilder;
use tower_circuit::breaker::{Breaker, CircuitState, Config, Window};
use tower_circuit::client::{
    BuildError, ClientError, DEFAULT_MAX_BODY, HttpClient, ServiceClient, WireService, wire,
};
use tower_circuit::retry::{Backoff, RetryBuilder, RetryLayer};
use tower_circuit::timeout::{
    ByMethod, DeadlineLayer, PropagateDeadlineLayer, RequestTimeoutLayer,
};

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

fn fast_retries() -> RetryBuilder {
    RetryLayer::builder("users")
        .backoff(
            Backoff::default()
                .base(Duration::from_millis(5))
                .cap(Duration::from_millis(20)),
        )
        .no_budget()
}

fn http() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The recommended stack's settings, each test changing one or two.
struct Stack {
    retry: RetryBuilder,
    breaker: Config,
    timeouts: ByMethod,
    max_body: usize,
    /// Per-attempt layer on the wire side (as signing would be).
    on_wire: Option<Box<dyn FnOnce(WireService) -> WireService>>,
}

impl Default for Stack {
    fn default() -> Self {
        Stack {
            retry: fast_retries(),
            breaker: Config::default(),
            timeouts: ByMethod::default(),
            max_body: DEFAULT_MAX_BODY,
            on_wire: None,
        }
    }
}

/// A client, its breaker and its retry layer (for their counts).
struct Built {
    client: ServiceClient,
    breaker: Breaker,
    retry: RetryLayer,
}

impl Stack {
    /// The stack written out, outermost first, as a user of the crate
    /// writes it.
    fn build(self, url: &str) -> Built {
        let breaker = Breaker::builder("users")
            .config(self.breaker)
            .build()
            .unwrap();
        let retry = self.retry.build().unwrap();
        let mut bottom = wire(http(), self.max_body);
        if let Some(layer) = self.on_wire {
            bottom = layer(bottom);
        }
        let stack = ServiceBuilder::new()
            .layer(DeadlineLayer::new(Duration::from_secs(30)))
            .layer(retry.clone())
            .layer(breaker.layer())
            .layer(RequestTimeoutLayer::new(self.timeouts))
            .layer(PropagateDeadlineLayer::new())
            .service(bottom);
        Built {
            client: ServiceClient::new("users", url, stack).unwrap(),
            breaker,
            retry,
        }
    }
}

#[tokio::test]
async fn get_parses_json() {
    let url = serve(Server::default()).await;
    let client = Stack::default().build(&url).client;
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
    let client = Stack::default().build(&url).client;
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
    let Built { client, retry, .. } = Stack::default().build(&url);
    let err = client.get::<User>("/missing").await.unwrap_err();
    match &err {
        ClientError::Status { status, body } => {
            assert_eq!(*status, StatusCode::NOT_FOUND);
            assert_eq!(&body[..], br#"{"error":"not_found"}"#);
        }
        other => panic!("expected a status error, got {other}"),
    }
    assert_eq!(retry.stats().retries, 0);
}

#[tokio::test]
async fn gets_are_retried_through_503s() {
    let server = Server {
        fail_first: 2,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let Built {
        client,
        breaker,
        retry,
    } = Stack::default().build(&url);
    let user: User = client.get("/flaky").await.unwrap();
    assert_eq!(user.id, 2, "the third call answered");
    assert_eq!(retry.stats().retries, 2);
    assert_eq!(
        breaker.stats().failures,
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
    let client = Stack::default().build(&url).client;
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
    let Built {
        client, breaker, ..
    } = Stack {
        retry: fast_retries().max_retries(0),
        breaker: Config::default()
            .window(Window::Count { size: 2 })
            .minimum_calls(2),
        ..Stack::default()
    }
    .build(&url);
    for _ in 0..2 {
        assert!(client.get::<User>("/flaky").await.is_err());
    }
    assert_eq!(breaker.state(), CircuitState::Open);
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
async fn the_facade_sends_through_whatever_service_it_is_given() {
    // The bare wire client, with no resilience layer at all (what the
    // demo's `--without-layers` measures): the first 503 comes back as it
    // is, with no retry.
    let server = Server {
        fail_first: 1,
        ..Server::default()
    };
    let url = serve(server.clone()).await;
    let client = ServiceClient::new("users", &url, wire(http(), DEFAULT_MAX_BODY)).unwrap();
    assert_eq!(client.name(), "users");
    assert_eq!(client.base_url(), url);
    let err = client.get::<User>("/flaky").await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status, .. } if status == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
    assert!(client.get::<User>("/flaky").await.is_ok());

    // Or any other service with the same request and response types.
    let canned = tower::service_fn(
        |req: http::Request<http_body_util::Full<bytes::Bytes>>| async move {
            assert_eq!(req.uri(), "http://users.test/users/7");
            Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::from_static(
                br#"{"id":7,"name":"canned"}"#,
            )))
        },
    );
    let client = ServiceClient::new("users", "http://users.test/", canned).unwrap();
    let user: User = client.get("users/7").await.unwrap();
    assert_eq!(user.name, "canned");
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let url = serve(Server::default()).await;
    let client = Stack {
        retry: fast_retries().max_retries(0),
        timeouts: ByMethod::default().reads(Duration::from_millis(50)),
        ..Stack::default()
    }
    .build(&url)
    .client;
    let err = client.get::<User>("/slow").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

#[tokio::test]
async fn a_body_over_the_cap_fails_the_call() {
    let url = serve(Server::default()).await;
    let client = Stack {
        retry: fast_retries().max_retries(0),
        max_body: 1_000,
        ..Stack::default()
    }
    .build(&url)
    .client;
    let err = client.get::<String>("/big").await.unwrap_err();
    assert!(matches!(err, ClientError::Unavailable(_)), "{err}");
}

#[tokio::test]
async fn wrong_json_is_a_decode_error() {
    let url = serve(Server::default()).await;
    let client = Stack::default().build(&url).client;
    let err = client.get::<Vec<u32>>("/users/7").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err}");
}

#[test]
fn a_relative_base_url_is_refused() {
    let err = ServiceClient::new("users", "users.internal", wire(http(), 1)).unwrap_err();
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
    let stamp = move |inner: WireService| -> WireService {
        let count = count.clone();
        WireService::new(tower::util::MapRequest::new(
            inner,
            move |mut req: http::Request<_>| {
                count.fetch_add(1, Ordering::SeqCst);
                req.headers_mut()
                    .insert("authorization", "Bearer test".parse().unwrap());
                req
            },
        ))
    };
    let client = Stack {
        on_wire: Some(Box::new(stamp)),
        ..Stack::default()
    }
    .build(&url)
    .client;
    let _: User = client.get("/flaky").await.unwrap();
    assert_eq!(stamped.load(Ordering::SeqCst), 2, "once per attempt");
}
