//! The order service's tables in SQLite: `<data-dir>/orders.db`, for one
//! process. Times the outbox schedules by are Unix milliseconds of this
//! process's clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{
    CachedUser, InsertError, NewOrder, Order, OrderRow, OutboxRow, PendingNotification, items_json,
    millis, new_deployment_id, order_from_row, pending_from_row, stored_order,
};
use crate::api::{Page, Paged};
use crate::db::sqlite::{self, Db};
use crate::db::{self, Durability};

mod migrate;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL,
    items       TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    status      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    user_email  TEXT NOT NULL,
    user_source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_user ON orders (user_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    caller       TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    order_id     INTEGER NOT NULL REFERENCES orders (id),
    PRIMARY KEY (caller, key)
);
CREATE TABLE IF NOT EXISTS user_cache (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    user_id         INTEGER NOT NULL,
    channel         TEXT NOT NULL,
    message         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    delivered_at    TEXT,
    lease_until     INTEGER,
    leased_by       TEXT
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_at) WHERE delivered_at IS NULL;
CREATE TABLE IF NOT EXISTS deployment (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    id  TEXT NOT NULL
);
";

// The CAST: a database from before cents keeps the column's REAL type
// (see `migrate::to_cents`), which stores whole numbers as floats.
const ORDER_SELECT: &str = "SELECT o.id, o.user_id, o.items, CAST(o.total_cents AS INTEGER),
    o.status, o.created_at,
    o.user_name, o.user_email, o.user_source, x.delivered_at
    FROM orders o LEFT JOIN outbox x ON x.order_id = o.id";

/// The order service's tables in `<data-dir>/orders.db`.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    pub(super) deployment: Arc<str>,
}

impl Store {
    pub(super) async fn open(data_dir: &Path, durability: Durability) -> Result<Self, sqlx::Error> {
        let db = sqlite::open(data_dir, "orders", SCHEMA, durability).await?;
        migrate::to_cents(&db).await?;
        migrate::leases(&db).await?;
        sqlx::query("INSERT INTO deployment (one, id) VALUES (1, ?) ON CONFLICT DO NOTHING")
            .bind(new_deployment_id())
            .execute(&db.writes)
            .await?;
        let deployment: String = sqlx::query_scalar("SELECT id FROM deployment")
            .fetch_one(&db.writes)
            .await?;
        Ok(Store {
            db,
            deployment: deployment.into(),
        })
    }

    pub(super) async fn insert(
        &self,
        order: NewOrder<'_>,
        message: &str,
    ) -> Result<Order, InsertError> {
        let items = items_json(order.items)?;
        // One writing connection: a second request with the same key waits
        // for this transaction in the pool, then finds the key taken.
        let mut tx = self.db.writes.begin().await?;
        let (id, created_at): (i64, String) = sqlx::query_as(
            "INSERT INTO orders (user_id, items, total_cents, status, created_at, user_name, user_email, user_source)
             VALUES (?, ?, ?, 'created', ?, ?, ?, ?) RETURNING id, created_at",
        )
        .bind(order.user_id)
        .bind(&items)
        .bind(order.total.get())
        .bind(db::timestamp())
        .bind(&order.user.name)
        .bind(&order.user.email)
        .bind(&order.user.source)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (order_id, user_id, channel, message, next_attempt_at)
             VALUES (?, ?, 'email', ?, ?)",
        )
        .bind(id)
        .bind(order.user_id)
        .bind(message.replace("{id}", &id.to_string()))
        .bind(db::unix_millis())
        .execute(&mut *tx)
        .await?;
        if let Some((caller, key, hash)) = order.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (caller, key, request_hash, order_id)
                 VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(caller)
            .bind(key)
            .bind(hash)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tx.rollback().await?;
                return Err(InsertError::KeyTaken);
            }
        }
        tx.commit().await?;
        Ok(stored_order(&order, id, created_at))
    }

    pub(super) async fn by_key(
        &self,
        caller: &str,
        key: &str,
    ) -> Result<Option<(String, Order)>, sqlx::Error> {
        let found: Option<(String, i64)> = sqlx::query_as(
            "SELECT request_hash, order_id FROM idempotency_keys WHERE caller = ? AND key = ?",
        )
        .bind(caller)
        .bind(key)
        .fetch_optional(&self.db.reads)
        .await?;
        let Some((hash, id)) = found else {
            return Ok(None);
        };
        Ok(self.get(id).await?.map(|order| (hash, order)))
    }

    pub(super) async fn get(&self, id: i64) -> Result<Option<Order>, sqlx::Error> {
        let row: Option<OrderRow> = sqlx::query_as(&format!("{ORDER_SELECT} WHERE o.id = ?"))
            .bind(id)
            .fetch_optional(&self.db.reads)
            .await?;
        row.map(order_from_row).transpose()
    }

    pub(super) async fn by_user(
        &self,
        user_id: i64,
        page: Page,
    ) -> Result<Paged<Order>, sqlx::Error> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "{ORDER_SELECT} WHERE o.user_id = ? AND o.id > ? ORDER BY o.id LIMIT ?"
        ))
        .bind(user_id)
        .bind(page.after)
        .bind(page.fetch())
        .fetch_all(&self.db.reads)
        .await?;
        let orders = rows
            .into_iter()
            .map(order_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(orders, |o| o.id))
    }

    pub(super) async fn cache_user(&self, user: &CachedUser) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO user_cache (id, name, email, fetched_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name, email = excluded.email,
             fetched_at = excluded.fetched_at",
        )
        .bind(user.id)
        .bind(&user.name)
        .bind(&user.email)
        .bind(db::timestamp())
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    pub(super) async fn cached_user(&self, id: i64) -> Result<Option<CachedUser>, sqlx::Error> {
        let row: Option<(i64, String, String)> =
            sqlx::query_as("SELECT id, name, email FROM user_cache WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.db.reads)
                .await?;
        Ok(row.map(|(id, name, email)| CachedUser { id, name, email }))
    }

    pub(super) async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<PendingNotification>, sqlx::Error> {
        let now = db::unix_millis();
        // One statement on the one writing connection: atomic.
        let rows: Vec<OutboxRow> = sqlx::query_as(
            "UPDATE outbox SET lease_until = ?, leased_by = ?
             WHERE id IN (
                 SELECT id FROM outbox
                 WHERE delivered_at IS NULL AND next_attempt_at <= ?
                   AND (lease_until IS NULL OR lease_until <= ?)
                 ORDER BY id LIMIT ?)
             RETURNING id, order_id, user_id, channel, message, attempts",
        )
        .bind(now.saturating_add(millis(lease)))
        .bind(owner)
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.db.writes)
        .await?;
        Ok(rows.into_iter().map(pending_from_row).collect())
    }

    pub(super) async fn next_due(&self) -> Result<Option<Duration>, sqlx::Error> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, 0))) FROM outbox
             WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.db.reads)
        .await?;
        Ok(at.map(|at| {
            Duration::from_millis(u64::try_from(at.saturating_sub(db::unix_millis())).unwrap_or(0))
        }))
    }

    pub(super) async fn pending(&self) -> Result<u64, sqlx::Error> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
            .fetch_one(&self.db.reads)
            .await?;
        Ok(u64::try_from(n).unwrap_or_default())
    }

    pub(super) async fn delivered(&self, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE outbox SET delivered_at = ?, last_error = NULL, lease_until = NULL,
             leased_by = NULL WHERE id = ? AND delivered_at IS NULL",
        )
        .bind(db::timestamp())
        .bind(id)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    pub(super) async fn failed(
        &self,
        id: i64,
        owner: &str,
        error: &str,
        retry_in: Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
             lease_until = NULL, leased_by = NULL
             WHERE id = ? AND leased_by = ? AND delivered_at IS NULL",
        )
        .bind(error)
        .bind(db::unix_millis().saturating_add(millis(retry_in)))
        .bind(id)
        .bind(owner)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    pub(super) async fn release(&self, owner: &str, ids: &[i64]) -> Result<(), sqlx::Error> {
        // One statement per record: a batch is at most a claim's size.
        let mut tx = self.db.writes.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE outbox SET lease_until = NULL, leased_by = NULL
                 WHERE id = ? AND leased_by = ?",
            )
            .bind(id)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
