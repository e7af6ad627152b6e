//! The services with `--notify-via nats`, for `tests/nats.rs`: names of
//! their own per test (so tests run in parallel on one server, and the
//! stream is deleted when the test ends), a NATS client of the test's own
//! to look at the stream, and a TCP relay between a service and NATS that
//! the test can cut and restore.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use demo_services::auth::Keys;
use demo_services::broker::NatsConfig;
use demo_services::fault::Faults;
use demo_services::notification;
use demo_services::order::{self, Settings, UserTransport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::{Data, Running, fast_resilience, start, start_order, start_user};

/// A stream, subject and consumer of this test's own on the server at
/// `url`; the stream is deleted on drop.
#[derive(Debug)]
pub struct Names {
    /// The names, at the server's URL.
    pub config: NatsConfig,
}

impl Names {
    /// Fresh names (process id and a counter) at `url`.
    pub fn new(url: &str) -> Names {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}_{n}", std::process::id());
        Names {
            config: NatsConfig {
                url: url.to_owned(),
                stream: format!("TEST_NOTIFICATIONS_{id}"),
                subject: format!("test.notifications.{id}"),
                consumer: format!("test-consumer-{id}"),
            },
        }
    }

    /// The same names at another URL (a [`Relay`]'s).
    pub fn at(&self, url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            ..self.config.clone()
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        // Async work in a drop: on a thread of its own, with a runtime of
        // its own, bounded.
        let config = self.config.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = tokio::time::timeout(
                    Duration::from_secs(3),
                    async_nats::connect(config.url.as_str()),
                )
                .await
                .ok()?
                .ok()?;
                let js = jetstream::new(client);
                let _ =
                    tokio::time::timeout(Duration::from_secs(3), js.delete_stream(&config.stream))
                        .await;
                Some(())
            })
        })
        .join();
    }
}

/// A JetStream client of the test's own.
pub async fn jetstream(url: &str) -> jetstream::Context {
    let client = async_nats::connect(url).await.expect("connect to NATS");
    jetstream::new(client)
}

/// Starts the notification service taking notifications from NATS with
/// `config`.
pub async fn start_notification(
    data: &Data,
    keys: &Keys,
    addr: Option<SocketAddr>,
    config: &NatsConfig,
) -> (Running, notification::State) {
    let state = notification::State::open(&data.database(), keys, Faults::default())
        .await
        .expect("open the notification service")
        .with_nats(config)
        .await
        .expect("a NATS client");
    start(state, addr).await
}

/// The three services with `--notify-via nats`, on fresh names.
#[derive(Debug)]
pub struct NatsCluster {
    /// Shared keys.
    pub keys: Keys,
    /// The names (the stream is deleted when the cluster is dropped).
    pub names: Names,
    /// The services' data.
    pub data: Data,
    /// The user service.
    pub user: Running,
    /// The notification service (`None` while stopped).
    pub notification: Option<Running>,
    /// Its state: store and NATS side.
    pub notifications: notification::State,
    /// The order service.
    pub order: Running,
    /// Its state: outbox, publisher, store.
    pub orders: order::State,
    /// The order service's settings.
    pub settings: Settings,
}

impl NatsCluster {
    /// Starts the three on fresh names at `url`; the order service
    /// publishes through `order_url` when given (a [`Relay`]), else
    /// straight to `url`.
    pub async fn start(url: &str, order_url: Option<&str>) -> NatsCluster {
        let keys = Keys::ephemeral();
        let names = Names::new(url);
        let data = Data::new().await;
        let (user, _) = start_user(&data, &keys, None).await;
        let (notification, notifications) =
            start_notification(&data, &keys, None, &names.config).await;
        let settings = Settings {
            user_url: user.url(),
            notification_url: notification.url(),
            user_transport: UserTransport::Http,
            resilience: fast_resilience(),
            tls: None,
            nats: Some(names.at(order_url.unwrap_or(url))),
        };
        let (order, orders) = start_order(&data, &keys, &settings, None).await;
        NatsCluster {
            keys,
            names,
            data,
            user,
            notification: Some(notification),
            notifications,
            order,
            orders,
            settings,
        }
    }

    /// A token from the gateway for `audience`.
    pub fn gateway(&self, audience: &str) -> String {
        self.keys
            .token(
                demo_services::auth::API_GATEWAY,
                audience,
                None,
                Duration::from_secs(300),
            )
            .expect("sign a token")
    }

    /// Stops the notification service (its consumer with it).
    pub async fn stop_notification(&mut self) {
        if let Some(running) = self.notification.take() {
            running.stop().await.expect("stop the notification service");
        }
    }

    /// Starts the notification service again on the same data and names.
    pub async fn restart_notification(&mut self) {
        self.stop_notification().await;
        let (running, state) =
            start_notification(&self.data, &self.keys, None, &self.names.config).await;
        self.notification = Some(running);
        self.notifications = state;
    }

    /// Waits until the outbox has nothing pending.
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

    /// Waits until the notification store holds `n` notifications.
    pub async fn stored(&self, n: i64, within: Duration) {
        let store = &self.notifications.store;
        let reached = until(within, || async { store.count().await.ok() == Some(n) }).await;
        let count = store.count().await.expect("count notifications");
        assert!(
            reached,
            "{count} notifications stored after {within:?}, not {n}"
        );
    }
}

/// Polls `check` every 20 ms until it holds or `within` has passed;
/// whether it held.
pub async fn until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay on `127.0.0.1:0` to a NATS server, which the test can cut
/// (every connection closed, new ones closed at once) and restore.
#[derive(Debug)]
pub struct Relay {
    /// Where it listens.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays to `target` (`host:port`), up or down from the start.
    pub async fn start(target: SocketAddr, up: bool) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a relay");
        let addr = listener.local_addr().expect("the relay's address");
        let flag = Arc::new(AtomicBool::new(up));
        let (cut, _) = watch::channel(0u64);
        let (is_up, cuts) = (flag.clone(), cut.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !is_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Relay {
            addr,
            up: flag,
            cut,
            task,
        }
    }

    /// Its URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    /// Relays again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` of a `nats://` URL, resolved.
pub fn socket_addr(url: &str) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let host_port = url.trim_start_matches("nats://");
    host_port
        .to_socket_addrs()
        .expect("resolve the NATS address")
        .next()
        .expect("an address for NATS")
}
