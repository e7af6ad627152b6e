//! Delivery of the notifications stored with each order (the outbox).
//!
//! A background task claims due records ([`OrderStore::claim`]: leased to
//! this process, so replicas sharing a database never send one record at
//! once), sends each through the notification client (with its own
//! breaker and retries), marks each delivered, and on failure schedules
//! the next attempt with a capped, jittered backoff kept in the database,
//! so pending records survive restarts. It wakes when an order is stored,
//! when the next record falls due (or another process's lease runs out),
//! and when an open breaker is due to let a probe through. Delivery is at
//! least once; the notification service deduplicates by order, and each
//! attempt carries the `Idempotency-Key` `order-<id>`.
//!
//! A record is sent only while its lease has at least the call's whole
//! deadline left, so a send never outlives the lease and no other replica
//! claims a record this one is still sending. A process killed while it
//! holds leases loses nothing: the records stay in the table and are
//! claimed again when the leases run out.
//!
//! Shutdown is prompt whatever the notification service does: the task
//! checks for it between records and abandons a delivery in flight (a
//! notification service that accepts and never answers would otherwise
//! hold each record for the client's whole deadline). An abandoned record
//! stays pending in the database, with no attempt counted, and is sent
//! again after a restart; the notification service stores one notification
//! per order, so a delivery that did arrive is not shown twice.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tower_circuit::retry::Backoff;

use super::notify::Notifier;
use super::store::{OrderStore, PendingNotification};
use crate::telemetry::request_id;
use crate::telemetry::{Escaped, Metrics};

/// How many records one claim leases.
const BATCH: u32 = 64;
/// The longest the task sleeps with nothing due: other processes on the
/// same database store orders without waking this one, and the backlog
/// count shown in `/health` is re-read at least this often.
const IDLE: Duration = Duration::from_secs(1);

/// The handle on the outbox: wake the sender, watch the backlog.
#[derive(Debug, Clone)]
pub struct Outbox {
    store: OrderStore,
    notifier: Notifier,
    backoff: Backoff,
    /// How long a claim reserves its records.
    lease: Duration,
    /// The longest one send can take (the client's whole-call deadline).
    send_limit: Duration,
    /// This process's name on its leases.
    owner: Arc<str>,
    wake: Arc<Notify>,
    pending: Arc<watch::Sender<u64>>,
    /// Records stored so far, counted before `pending` is raised: lets a
    /// recount tell whether an order was stored while it read the table.
    stores: Arc<AtomicU64>,
    metrics: Metrics,
}

/// How a pass ended.
enum Pass {
    /// Nothing more to send now: wait this long (or for a wake-up).
    Wait(Duration),
    /// Shutdown began.
    Stopped,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    user_id: i64,
    order_id: i64,
    channel: &'a str,
    message: &'a str,
}

impl Outbox {
    /// An outbox over `store`, delivering through `notifier` (HTTP or
    /// NATS, by `--notify-via`; each send ends within `send_limit`),
    /// claiming records for `lease`, which must be longer than
    /// `send_limit`.
    pub async fn new(
        store: OrderStore,
        notifier: Notifier,
        backoff: Backoff,
        lease: Duration,
        send_limit: Duration,
        metrics: Metrics,
    ) -> Result<Outbox, sqlx::Error> {
        let pending = store.pending().await?;
        use rand::RngExt;
        let bits: u64 = rand::rng().random();
        Ok(Outbox {
            store,
            notifier,
            backoff,
            lease,
            send_limit,
            owner: format!("{}-{bits:016x}", std::process::id()).into(),
            wake: Arc::new(Notify::new()),
            pending: Arc::new(watch::Sender::new(pending)),
            stores: Arc::new(AtomicU64::new(0)),
            metrics,
        })
    }

    /// Tells the sender a record was stored.
    pub fn stored(&self) {
        self.stores.fetch_add(1, Ordering::SeqCst);
        self.pending.send_modify(|n| *n += 1);
        self.wake.notify_one();
    }

    /// Notifications not delivered yet.
    pub fn pending(&self) -> u64 {
        *self.pending.borrow()
    }

    /// Watches the number of notifications not delivered yet.
    pub fn watch_pending(&self) -> watch::Receiver<u64> {
        self.pending.subscribe()
    }

    /// Delivers until `shutdown` completes, which stops it at once: between
    /// records, or during a delivery, which is abandoned (the record stays
    /// pending).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let wait = match self.pass(shutdown.as_mut()).await {
                Ok(Pass::Wait(wait)) => wait,
                Ok(Pass::Stopped) => break,
                Err(e) => {
                    tracing::error!(error = %Escaped(&e), "outbox: database error; trying again shortly");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(pending = self.pending(), "outbox stopped");
    }

    /// Sends what is due; returns how long to wait before the next pass,
    /// or that `shutdown` completed (it must not be polled again then).
    async fn pass<S: Future<Output = ()>>(
        &self,
        mut shutdown: Pin<&mut S>,
    ) -> Result<Pass, sqlx::Error> {
        loop {
            let claimed_at = tokio::time::Instant::now();
            let mut due = self
                .store
                .claim(&self.owner, BATCH, self.lease)
                .await?
                .into_iter();
            if due.as_slice().is_empty() {
                break;
            }
            let full = due.len() == BATCH as usize;
            while let Some(record) = due.next() {
                // Too little of the lease left for a whole send: give the
                // rest back and claim again, for a fresh lease.
                if claimed_at.elapsed() + self.send_limit >= self.lease {
                    self.release(std::iter::once(record).chain(due)).await?;
                    break;
                }
                let order = record.order_id;
                let id = record.id;
                let delivery = self.deliver(record);
                // Checked before each record (biased) and during its
                // delivery. Dropping the delivery drops its call; the
                // database writes after the call are single statements,
                // done or not, never half done.
                let outcome = tokio::select! {
                    biased;
                    () = shutdown.as_mut() => None,
                    outcome = delivery => Some(outcome?),
                };
                match outcome {
                    None => {
                        tracing::info!(
                            order,
                            "outbox: shutting down; the delivery in flight stays pending"
                        );
                        // Given back, so another replica (or this one
                        // restarted) need not wait out the lease.
                        let unsent = std::iter::once(id)
                            .chain(due.map(|r| r.id))
                            .collect::<Vec<_>>();
                        if let Err(e) = self.store.release(&self.owner, &unsent).await {
                            tracing::warn!(error = %Escaped(&e), "outbox: leases not released; they run out by themselves");
                        }
                        return Ok(Pass::Stopped);
                    }
                    Some(Some(wait)) => {
                        // The breaker is open: the rest would be refused too.
                        self.release(due).await?;
                        self.sync_pending().await?;
                        return Ok(Pass::Wait(wait));
                    }
                    Some(None) => {}
                }
            }
            if !full {
                break;
            }
            // Between batches of a long backlog too: other replicas drain
            // the same table, and `/health` shows the shared count.
            self.sync_pending().await?;
        }
        self.sync_pending().await?;
        Ok(Pass::Wait(
            self.store.next_due().await?.unwrap_or(IDLE).min(IDLE),
        ))
    }

    /// Ends this process's leases on `records`, claimed but not sent.
    async fn release(
        &self,
        records: impl Iterator<Item = PendingNotification>,
    ) -> Result<(), sqlx::Error> {
        let ids: Vec<i64> = records.map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        self.store.release(&self.owner, &ids).await
    }

    /// One attempt; `Some(wait)` when the circuit is open for that long.
    async fn deliver(&self, record: PendingNotification) -> Result<Option<Duration>, sqlx::Error> {
        let body = Body {
            user_id: record.user_id,
            order_id: record.order_id,
            channel: &record.channel,
            message: &record.message,
        };
        // Each delivery gets an id of its own, for the logs on both sides.
        // Its key, the same on every attempt, is `order-<id>` over HTTP and
        // `<deployment>-order-<id>` over NATS (see `notify`).
        let result = request_id::with_id(
            request_id::new_id(),
            self.notifier
                .send(self.store.deployment_id(), record.order_id, &body),
        )
        .await;
        let outcome = if result.is_ok() {
            "delivered"
        } else {
            "failed"
        };
        self.metrics.record(|| {
            metrics::counter!("outbox_deliveries_total", "result" => outcome).increment(1);
        });
        match result {
            Ok(_) => {
                self.store.delivered(record.id).await?;
                self.pending.send_modify(|n| *n = n.saturating_sub(1));
                tracing::info!(
                    order = record.order_id,
                    attempts = record.attempts + 1,
                    "notification delivered"
                );
                Ok(None)
            }
            Err(e) => {
                let delay = self.backoff.delay(record.attempts, None);
                self.store
                    .failed(record.id, &self.owner, &e.to_string(), delay)
                    .await?;
                tracing::warn!(
                    order = record.order_id,
                    attempts = record.attempts + 1,
                    next_in = ?delay,
                    error = %Escaped(&e),
                    "notification not delivered; will try again"
                );
                Ok(e.is_circuit_open()
                    .then(|| e.retry_after().unwrap_or(delay).max(delay)))
            }
        }
    }

    /// Sets the count to the table's, unless an order was stored while the
    /// table was read: that count may miss it, and writing it would undo
    /// the order's `stored()` (a backlog shown as 0 with a record still
    /// pending, which a caller waiting for 0 would take as drained). The
    /// order's wake-up starts another pass, which counts again.
    async fn sync_pending(&self) -> Result<(), sqlx::Error> {
        let stores = self.stores.load(Ordering::SeqCst);
        let n = self.store.pending().await?;
        self.pending.send_if_modified(|old| {
            // Checked under the watch's lock, which `stored()` takes after
            // counting: a store not seen here raises the count after this.
            if self.stores.load(Ordering::SeqCst) != stores {
                return false;
            }
            let changed = *old != n;
            *old = n;
            changed
        });
        Ok(())
    }
}
