//! Starting the demo services on `127.0.0.1:0` for tests (through
//! `demo_services::harness`), with millisecond resilience settings, and a
//! temporary data directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use demo_services::auth::{self, Keys};
use demo_services::fault::Faults;
use demo_services::harness;
use demo_services::order::{self, Resilience, Settings, UserTransport};
use demo_services::server::ServiceState;
use demo_services::tls::identity::TlsDir;
use demo_services::{notification, user};
use serde_json::Value;

pub use demo_services::harness::{Answer, Http, Running};

pub use self::data::{Backend, Data};
/// PostgreSQL and NATS on loopback, or skipped with a note.
pub use demo_services::harness::engines;

pub mod data;
pub mod logs;
pub mod nats;
pub mod tls;

/// The workspace README's Rust snippets, compiled as doc tests so they
/// stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadme;

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

/// Starts the service of `state` (on `addr`, or a fresh port).
async fn start<S: ServiceState>(state: S, addr: Option<SocketAddr>) -> (Running, S) {
    let running = harness::start(state.clone(), addr)
        .await
        .expect("start the service");
    (running, state)
}

/// Starts the user service (on `addr`, or a fresh port), without faults.
pub async fn start_user(
    data: &Data,
    keys: &Keys,
    addr: Option<SocketAddr>,
) -> (Running, user::State) {
    start_user_with(data, keys, addr, None).await
}

/// Starts the user service, over mutual TLS with `tls` if given.
pub async fn start_user_with(
    data: &Data,
    keys: &Keys,
    addr: Option<SocketAddr>,
    tls: Option<TlsDir>,
) -> (Running, user::State) {
    let mut state = user::State::open(&data.database(), keys, Faults::default())
        .await
        .expect("open the user service");
    state.server.tls = tls;
    start(state, addr).await
}

/// Starts the notification service.
pub async fn start_notification(
    data: &Data,
    keys: &Keys,
    addr: Option<SocketAddr>,
) -> (Running, notification::State) {
    start_notification_with(data, keys, addr, None).await
}

/// Starts the notification service, over mutual TLS with `tls` if given.
pub async fn start_notification_with(
    data: &Data,
    keys: &Keys,
    addr: Option<SocketAddr>,
    tls: Option<TlsDir>,
) -> (Running, notification::State) {
    let mut state = notification::State::open(&data.database(), keys, Faults::default())
        .await
        .expect("open the notification service");
    state.server.tls = tls;
    start(state, addr).await
}

/// Starts the order service.
pub async fn start_order(
    data: &Data,
    keys: &Keys,
    settings: &Settings,
    addr: Option<SocketAddr>,
) -> (Running, order::State) {
    let state = order::State::open(&data.database(), keys, settings, Faults::default())
        .await
        .expect("open the order service");
    start(state, addr).await
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
        ..Resilience::default()
    }
}

/// Three services on loopback with shared ephemeral keys.
#[derive(Debug)]
pub struct Cluster {
    /// Keys shared by the three, and used to mint callers' tokens.
    pub keys: Keys,
    /// The three services' data (SQLite files, or a PostgreSQL schema).
    pub data: Data,
    /// The user service.
    pub user: Running,
    /// Its state (faults, metrics).
    pub users: user::State,
    /// The notification service.
    pub notification: Running,
    /// The order service.
    pub order: Running,
    /// The order service's state: outbox, clients, store.
    pub orders: order::State,
    /// The order service's settings, to restart it alike.
    pub settings: Settings,
    /// With [`Cluster::start_mtls`], the certificates (`certs` output) all
    /// three serve and call with.
    pub certs: Option<TempDir>,
}

impl Cluster {
    /// Starts the three with [`fast_resilience`].
    pub async fn start() -> Cluster {
        Cluster::start_with(fast_resilience()).await
    }

    /// Starts the three with these settings.
    pub async fn start_with(resilience: Resilience) -> Cluster {
        Cluster::start_over(UserTransport::Http, resilience).await
    }

    /// Starts the three with these settings, the order service fetching
    /// users over `transport`.
    pub async fn start_over(transport: UserTransport, resilience: Resilience) -> Cluster {
        Cluster::start_keyed(Keys::ephemeral(), transport, resilience).await
    }

    /// Starts the three with `keys` (and so in `keys`' `--service-auth`
    /// mode), the order service fetching users over `transport`.
    pub async fn start_keyed(
        keys: Keys,
        transport: UserTransport,
        resilience: Resilience,
    ) -> Cluster {
        Cluster::start_as(keys, transport, resilience, None).await
    }

    /// Starts the three over mutual TLS with fresh certificates (trust
    /// domain `demo.local`), the order service fetching users over
    /// `transport`.
    pub async fn start_mtls(transport: UserTransport, resilience: Resilience) -> Cluster {
        Cluster::start_mtls_keyed(Keys::ephemeral(), transport, resilience).await
    }

    /// Starts the three over mutual TLS with fresh certificates (trust
    /// domain `demo.local`), authenticating each other as `keys` says
    /// (`Keys::mtls` for certificates alone).
    pub async fn start_mtls_keyed(
        keys: Keys,
        transport: UserTransport,
        resilience: Resilience,
    ) -> Cluster {
        let dir = tls::certs_dir();
        Cluster::start_as(keys, transport, resilience, Some(dir)).await
    }

    async fn start_as(
        keys: Keys,
        transport: UserTransport,
        resilience: Resilience,
        certs: Option<TempDir>,
    ) -> Cluster {
        let data = Data::new().await;
        let tls = |service| {
            certs
                .as_ref()
                .map(|dir| TlsDir::open(dir.path(), service).expect("open the TLS directory"))
        };
        let (user, users) = start_user_with(&data, &keys, None, tls(auth::USER_SERVICE)).await;
        let (notification, _) =
            start_notification_with(&data, &keys, None, tls(auth::NOTIFICATION_SERVICE)).await;
        let settings = Settings {
            user_url: user.url(),
            notification_url: notification.url(),
            user_transport: transport,
            resilience,
            tls: tls(auth::ORDER_SERVICE),
            nats: None,
        };
        let (order, orders) = start_order(&data, &keys, &settings, None).await;
        Cluster {
            keys,
            data,
            user,
            users,
            notification,
            order,
            orders,
            settings,
            certs,
        }
    }

    /// `service`'s side of the cluster's certificates, if it runs over
    /// mutual TLS.
    pub fn tls(&self, service: &str) -> Option<TlsDir> {
        self.certs
            .as_ref()
            .map(|dir| TlsDir::open(dir.path(), service).expect("open the TLS directory"))
    }

    /// The gateway's client for calls to `service`: over mutual TLS with
    /// the gateway's certificate when the cluster runs over it.
    pub fn http(&self, service: &str) -> Http {
        match self.tls(auth::API_GATEWAY) {
            Some(gateway) => Http::over_tls(&gateway, service).expect("a TLS client"),
            None => Http::default(),
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

/// The order body of the README: two of `p-1` at 9.99 for `user_id`.
pub fn order_body(user_id: i64) -> Value {
    serde_json::json!({
        "userId": user_id,
        "items": [{ "productId": "p-1", "quantity": 2, "unitPrice": 9.99 }]
    })
}
