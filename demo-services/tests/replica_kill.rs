//! An order-service replica killed with SIGKILL, beside another on the same
//! PostgreSQL database: nothing it acknowledged is lost, and nothing is
//! delivered twice. The killed replica is the real binary; the survivor,
//! the user and the notification services run in this process.
//!
//! Needs PostgreSQL (see `demo_services::harness::engines`); skipped with
//! a note without it, failing under CI.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use demo_services::auth::{API_GATEWAY, Keys, ORDER_SERVICE};
use demo_services::db::Database;
use demo_services::fault::Faults;
use demo_services::harness::{self, Http, Running, engines};
use demo_services::order::{self, Resilience, Settings};
use demo_services::{notification, user};
use http::StatusCode;
use sqlx::{Connection, PgPool};

const BIN: &str = env!("CARGO_BIN_EXE_demo-services");
const SECRET: &str = "a shared secret for the replica tests, 32+ bytes";
/// The replicas' lease: short, so the test waits little for a dead one.
const LEASE: Duration = Duration::from_secs(6);
/// Their whole-call deadline, shorter than the lease.
const DEADLINE: Duration = Duration::from_secs(4);

/// A schema of this test's own, dropped at the end.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    async fn new(url: &str, name: &str) -> Schema {
        // The prefix and process id let a later test run drop it if this one
        // dies before it can (tests/support/data.rs).
        let name = format!("demo_test_{}_kill_{name}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::raw_sql(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
        ))
        .execute(&mut conn)
        .await
        .expect("create the schema");
        Schema {
            url: format!("{url}?options[search_path]={name}"),
            name,
        }
    }

    async fn drop_now(self, base: &str) {
        let mut conn = sqlx::PgConnection::connect(base).await.expect("connect");
        let _ = sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .execute(&mut conn)
            .await;
    }
}

/// The user and notification services, in this process, on `db`.
struct Dependencies {
    keys: Keys,
    user: Running,
    notification: Running,
    notifications: notification::State,
}

async fn dependencies(db: &Database) -> Dependencies {
    let keys = Keys::shared_secret(SECRET.as_bytes()).unwrap();
    let users = user::State::open(db, &keys, Faults::default())
        .await
        .unwrap();
    let notifications = notification::State::open(db, &keys, Faults::default())
        .await
        .unwrap();
    Dependencies {
        user: harness::start(users, None).await.unwrap(),
        notification: harness::start(notifications.clone(), None).await.unwrap(),
        keys,
        notifications,
    }
}

fn resilience() -> Resilience {
    Resilience {
        timeout_write: DEADLINE,
        call_deadline: DEADLINE,
        outbox_lease: LEASE,
        outbox_backoff_cap: Duration::from_millis(200),
        ..Resilience::default()
    }
}

/// The surviving replica, in this process.
async fn survivor(db: &Database, deps: &Dependencies) -> (Running, order::State) {
    let settings = Settings {
        user_url: deps.user.url(),
        notification_url: deps.notification.url(),
        user_transport: Default::default(),
        resilience: resilience(),
        tls: None,
        nats: None,
    };
    let state = order::State::open(db, &deps.keys, &settings, Faults::default())
        .await
        .unwrap();
    (harness::start(state.clone(), None).await.unwrap(), state)
}

/// A replica as its own process, killed when dropped.
struct Replica {
    child: Child,
    addr: String,
    /// Kept, so its log keeps being read (a closed pipe would fail its
    /// writes).
    _log: mpsc::Receiver<String>,
}

impl Replica {
    fn start(db_url: &str, user_url: &str, notification_url: &str) -> Replica {
        let mut child = Command::new(BIN)
            .args(["order", "--listen", "127.0.0.1:0", "--database-url", db_url])
            .args([
                "--user-url",
                user_url,
                "--notification-url",
                notification_url,
            ])
            .args(["--outbox-lease", &format!("{}s", LEASE.as_secs())])
            .args(["--call-deadline", &format!("{}s", DEADLINE.as_secs())])
            .args(["--timeout-write", &format!("{}s", DEADLINE.as_secs())])
            .env("SERVICE_JWT_SECRET", SECRET)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the order service");
        let log = lines(child.stderr.take().unwrap());
        let addr = loop {
            let line = log
                .recv_timeout(Duration::from_secs(30))
                .expect("the replica starts within 30 s");
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
            {
                break addr.to_owned();
            }
        };
        Replica {
            child,
            addr,
            _log: log,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// SIGKILL: no shutdown code runs, no lease is given back.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL the replica");
        self.child.wait().expect("reap it");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A notification service that accepts connections and never answers.
async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

fn order_body(user_id: i64) -> serde_json::Value {
    serde_json::json!({
        "userId": user_id,
        "items": [{ "productId": "p-1", "quantity": 1, "unitPrice": 5.0 }]
    })
}

/// Waits (at most `within`) until `check` holds, polling every 50 ms.
async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many notifications of each kind the notification service accepted.
fn accepted(metrics: &str, result: &str) -> f64 {
    let series = format!("notifications_accepted_total{{result=\"{result}\"}}");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A replica killed while its outbox holds a lease (it is sending into a
/// notification service that never answers): the other replica sends the
/// records nobody holds at once, the leased one once its lease runs out,
/// each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_leases_loses_nothing() {
    let Some(base) = engines::postgres() else {
        return;
    };
    let schema = Schema::new(&base, "leases").await;
    let db = Database::Postgres {
        url: schema.url.clone(),
    };
    let deps = dependencies(&db).await;
    let (hole, hole_task) = black_hole().await;
    let doomed = Replica::start(&schema.url, &deps.user.url(), &format!("http://{hole}"));
    let http = Http::default();
    let token = deps
        .keys
        .token(API_GATEWAY, ORDER_SERVICE, None, Duration::from_secs(300))
        .unwrap();
    let mut ids = Vec::new();
    for user in [1, 2, 3, 1, 2, 3, 1, 2, 3, 1] {
        let res = http
            .post(
                &format!("{}/orders", doomed.url()),
                &token,
                &order_body(user),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        ids.push(res.json["id"].as_i64().unwrap());
    }
    let pool = PgPool::connect(&schema.url).await.unwrap();
    let leased = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM outbox WHERE leased_by IS NOT NULL AND delivered_at IS NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // A claim held, its record stuck in the black hole (the rest came
    // while the outbox was busy sending it).
    eventually(DEADLINE, "the doomed replica holds a lease", || async {
        leased().await >= 1
    })
    .await;
    let held = leased().await;
    doomed.kill();
    assert_eq!(leased().await, held, "SIGKILL gave nothing back");

    let (_order, survivor) = survivor(&db, &deps).await;
    eventually(LEASE * 3, "every notification delivered", || async {
        survivor.store.pending().await.unwrap() == 0
    })
    .await;
    assert_eq!(deps.notifications.store.count().await.unwrap(), 10);
    let metrics = deps.notifications.server.metrics.render();
    assert_eq!(accepted(&metrics, "new"), 10.0);
    assert_eq!(accepted(&metrics, "duplicate"), 0.0, "none sent twice");
    for id in ids {
        let order = survivor.store.get(id).await.unwrap().unwrap();
        assert_eq!(order.notification, "delivered", "order {id}");
    }
    hole_task.abort();
    pool.close().await;
    schema.drop_now(&base).await;
}

/// A replica killed right after answering 201, three times over: each
/// order's notification still arrives once (from the survivor, or from
/// the replica itself if it sent before it died).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_right_after_answering_loses_nothing() {
    let Some(base) = engines::postgres() else {
        return;
    };
    let schema = Schema::new(&base, "answered").await;
    let db = Database::Postgres {
        url: schema.url.clone(),
    };
    let deps = dependencies(&db).await;
    let (_order, survivor) = survivor(&db, &deps).await;
    let http = Http::default();
    let token = deps
        .keys
        .token(API_GATEWAY, ORDER_SERVICE, None, Duration::from_secs(300))
        .unwrap();
    let mut ids = Vec::new();
    for user in [1, 2, 3] {
        let doomed = Replica::start(&schema.url, &deps.user.url(), &deps.notification.url());
        let res = http
            .post(
                &format!("{}/orders", doomed.url()),
                &token,
                &order_body(user),
            )
            .await;
        doomed.kill();
        assert_eq!(res.status, StatusCode::CREATED, "{:?}", res.json);
        ids.push(res.json["id"].as_i64().unwrap());
    }
    // Delivered and marked so: a replica killed between the two leaves
    // its lease to run out, and the survivor sends again (the
    // notification service takes the second as the redelivery it is).
    eventually(LEASE * 3, "every notification delivered", || async {
        survivor.store.pending().await.unwrap() == 0
    })
    .await;
    assert_eq!(deps.notifications.store.count().await.unwrap(), 3);
    for id in ids {
        let page = deps
            .notifications
            .store
            .by_order(
                id,
                demo_services::api::Page {
                    limit: 10,
                    after: 0,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "order {id}");
        let order = survivor.store.get(id).await.unwrap().unwrap();
        assert_eq!(order.notification, "delivered", "order {id}");
    }
    schema.drop_now(&base).await;
}
