//! Starting the demo services on `127.0.0.1:0` for tests, stopping and
//! restarting them on the same address, and calling them as a caller with a
//! token.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use demo_services::auth::{self, Keys};
use demo_services::order::{self, Resilience, Settings};
use demo_services::{notification, user};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory.
    pub fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "demo-services-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temp dir");
        TempDir(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service running on a task, stoppable.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Running {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the service stops within its grace period")
            .expect("the service task does not panic")
            .expect("the service ends without error");
    }
}

async fn listen(addr: Option<SocketAddr>) -> TcpListener {
    let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    TcpListener::bind(addr).await.expect("bind a loopback port")
}

fn spawn<F>(
    listener: TcpListener,
    run: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F,
) -> Running
where
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr().expect("a bound address");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(run(listener, rx));
    Running {
        addr,
        stop: Some(tx),
        task,
    }
}

async fn stopped(rx: oneshot::Receiver<()>) {
    let _ = rx.await;
}

/// Starts the user service (on `addr`, or a fresh port).
pub async fn start_user(dir: &Path, keys: &Keys, addr: Option<SocketAddr>) -> Running {
    let state = user::State::open(dir, keys.clone()).await.expect("user db");
    spawn(listen(addr).await, move |l, rx| {
        user::run(l, state, stopped(rx))
    })
}

/// Starts the notification service.
pub async fn start_notification(dir: &Path, keys: &Keys, addr: Option<SocketAddr>) -> Running {
    let state = notification::State::open(dir, keys.clone())
        .await
        .expect("notification db");
    spawn(listen(addr).await, move |l, rx| {
        notification::run(l, state, stopped(rx))
    })
}

/// Starts the order service; returns its state too, for the outbox and
/// breakers.
pub async fn start_order(
    dir: &Path,
    keys: &Keys,
    settings: &Settings,
    addr: Option<SocketAddr>,
) -> (Running, order::State) {
    let state = order::State::open(dir, keys.clone(), settings)
        .await
        .expect("order service state");
    let handle = state.clone();
    let running = spawn(listen(addr).await, move |l, rx| {
        order::run(l, state, stopped(rx))
    });
    (running, handle)
}

/// Resilience settings in milliseconds, so outage tests stay fast.
pub fn fast_resilience() -> Resilience {
    Resilience {
        breaker_failure_rate: 0.5,
        breaker_minimum_calls: 2,
        breaker_window: Duration::from_secs(5),
        breaker_open_duration: Duration::from_millis(300),
        retry_max: 1,
        retry_base_delay: Duration::from_millis(5),
        timeout_get: Duration::from_millis(500),
        timeout_write: Duration::from_millis(500),
        call_deadline: Duration::from_secs(2),
        outbox_backoff_cap: Duration::from_millis(100),
    }
}

/// Three services on loopback with shared ephemeral keys.
#[derive(Debug)]
pub struct Cluster {
    /// Keys shared by the three, and used to mint callers' tokens.
    pub keys: Keys,
    /// The data directory (one database file per service).
    pub data: TempDir,
    /// The user service.
    pub user: Running,
    /// The notification service.
    pub notification: Running,
    /// The order service.
    pub order: Running,
    /// The order service's state: outbox, clients, store.
    pub orders: order::State,
    /// The order service's settings, to restart it alike.
    pub settings: Settings,
}

impl Cluster {
    /// Starts the three with [`fast_resilience`].
    pub async fn start() -> Cluster {
        Cluster::start_with(fast_resilience()).await
    }

    /// Starts the three with these settings.
    pub async fn start_with(resilience: Resilience) -> Cluster {
        let keys = Keys::ephemeral();
        let data = TempDir::new();
        let user = start_user(data.path(), &keys, None).await;
        let notification = start_notification(data.path(), &keys, None).await;
        let settings = Settings {
            user_url: user.url(),
            notification_url: notification.url(),
            resilience,
        };
        let (order, orders) = start_order(data.path(), &keys, &settings, None).await;
        Cluster {
            keys,
            data,
            user,
            notification,
            order,
            orders,
            settings,
        }
    }

    /// A token from `caller` (with its usual permissions) for `audience`.
    pub fn token(&self, caller: &str, audience: &str) -> String {
        self.keys
            .token(caller, audience, None, Duration::from_secs(300))
            .expect("sign a token")
    }

    /// A token from the gateway for `audience`.
    pub fn gateway(&self, audience: &str) -> String {
        self.token(auth::API_GATEWAY, audience)
    }

    /// Waits until every stored notification is delivered.
    pub async fn drained(&self, within: Duration) {
        let mut pending = self.orders.outbox.watch_pending();
        tokio::time::timeout(within, pending.wait_for(|n| *n == 0))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} notifications still pending after {within:?}",
                    self.orders.outbox.pending()
                )
            })
            .expect("the outbox is alive");
    }
}

/// An answer: status, headers and the body as JSON (or `Value::Null`).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, parsed.
    pub json: Value,
    /// The body as sent.
    pub raw: Bytes,
}

impl Answer {
    /// The JSON body's `error` code.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<no error field>")
    }
}

/// A plain HTTP client for tests.
#[derive(Debug, Clone)]
pub struct Http(HyperClient<HttpConnector, Full<Bytes>>);

impl Default for Http {
    fn default() -> Self {
        Http(HyperClient::builder(TokioExecutor::new()).build_http())
    }
}

impl Http {
    /// Sends `method url` with an optional bearer token, extra headers and
    /// body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(body.into())).expect("a valid request");
        let res = tokio::time::timeout(Duration::from_secs(10), self.0.request(req))
            .await
            .expect("an answer within 10 s")
            .expect("the request reaches the server");
        let (parts, body) = res.into_parts();
        let raw = body.collect().await.expect("the whole body").to_bytes();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Answer {
            status: parts.status,
            headers: parts.headers,
            json,
            raw,
        }
    }

    /// `GET url` with a token.
    pub async fn get(&self, url: &str, token: &str) -> Answer {
        self.send(Method::GET, url, Some(token), &[], Bytes::new())
            .await
    }

    /// `POST url` with a token and a JSON body.
    pub async fn post(&self, url: &str, token: &str, body: &Value) -> Answer {
        self.post_with(url, token, &[], body).await
    }

    /// `POST url` with a token, extra headers and a JSON body.
    pub async fn post_with(
        &self,
        url: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(Method::POST, url, Some(token), &all, body.to_string())
            .await
    }
}

/// The order body of the README: two of `p-1` at 9.99 for `user_id`.
pub fn order_body(user_id: i64) -> Value {
    serde_json::json!({
        "userId": user_id,
        "items": [{ "productId": "p-1", "quantity": 2, "unitPrice": 9.99 }]
    })
}
